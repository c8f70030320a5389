#!/usr/bin/env python3
"""The "short script" users write instead of nimriz-matrix: one POST /api/shorten per link,
one at a time, Python stdlib only (urllib.request, so a new connection per request, as a
plain script does).

    NIMRIZ_API_BASE=http://127.0.0.1:PORT NIMRIZ_API_KEY=... \
        python3 benches/naive_baseline.py --plan plan.jsonl --limit 200 --domain naive.bench.test

Reads links from a dry-run plan (`build --dry-run --format jsonl`), so it sends exactly the
destinations and slugs the tool would; --domain puts them on another short domain so they do
not collide with the tool's links. Prints one JSON line: links sent, created, seconds.
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request


def api(base, key, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + key)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"null")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plan", required=True, help="jsonl plan from build --dry-run --format jsonl")
    ap.add_argument("--limit", type=int, default=200, help="send only the first N links")
    ap.add_argument("--domain", required=True, help="short domain host to create them on")
    args = ap.parse_args()
    base = os.environ.get("NIMRIZ_API_BASE", "").rstrip("/")
    key = os.environ.get("NIMRIZ_API_KEY", "")
    if not base or not key:
        sys.exit("naive_baseline: set NIMRIZ_API_BASE and NIMRIZ_API_KEY")

    links = []
    with open(args.plan, encoding="utf-8") as f:
        for line in f:
            if len(links) >= args.limit:
                break
            if line.strip():
                links.append(json.loads(line))

    started = time.monotonic()
    domains = api(base, key, "GET", "/api/v1/domains")["domains"]
    domain_id = next((d["id"] for d in domains if d["domain_name"] == args.domain), None)
    if domain_id is None:
        sys.exit(f"naive_baseline: the server has no domain {args.domain}")
    created = failed = 0
    for link in links:
        body = {
            "domain_id": domain_id,
            "long_url": link["destination"],
            "custom_slug": link["slug"],
            "redirect_status_code": link.get("redirect", 302),
        }
        try:
            api(base, key, "POST", "/api/shorten", body)
            created += 1
        except urllib.error.HTTPError:
            failed += 1
    elapsed = time.monotonic() - started
    print(json.dumps({"links": len(links), "created": created, "failed": failed, "seconds": elapsed}))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
