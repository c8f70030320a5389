#!/usr/bin/env python3
"""Measurement helpers for benches/run.sh (Python stdlib only).

    measure.py time --out raw.jsonl --id ID [--meta k=v ...] [--stats-url URL] [--rss] -- CMD...
        Run CMD once; append one JSON record: wall seconds (time.monotonic), exit code, peak
        RSS of CMD (os.wait4, or /usr/bin/time -v with --rss when installed), the 1-minute
        load average at the start, and, with --stats-url, the change in the sandbox's
        request/fault counters across the run. CMD's stdout/stderr go to ID.out/ID.err in
        --logs (default: next to --out).
    measure.py load --out raw.jsonl --id ID --url URL --domain HOST --pid PID ...
        Drive the sandbox directly with bulk creates from a few threads (no nimriz-matrix in
        the loop) and record rows/s plus the CPU seconds the sandbox process spent.
    measure.py wait-load --below X --max-wait S
        Wait (up to S seconds) until the 1-minute load average is below X.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

KEY_ENV = "NIMRIZ_API_KEY"


def load1():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def get_stats(url):
    req = urllib.request.Request(url.rstrip("/") + "/__sandbox/stats")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def stats_delta(before, after):
    """Counters that changed during the run (requests per route, faults)."""
    routes = {}
    for route, n in after["requests"].items():
        d = n - before["requests"].get(route, 0)
        if d:
            routes[route] = d
    faults = {k: after["faults"][k] - before["faults"].get(k, 0) for k in after["faults"]}
    return {
        "requests": routes,
        "total_requests": sum(routes.values()),
        "create_requests": routes.get("POST /api/shorten", 0) + routes.get("POST /api/shorten/bulk", 0),
        "faults": faults,
        "links_after": after["links"],
        "max_inserts_per_slug": after["max_inserts_per_slug"],
    }


def parse_meta(pairs):
    meta = {}
    for p in pairs or []:
        k, _, v = p.partition("=")
        try:
            meta[k] = json.loads(v)
        except ValueError:
            meta[k] = v
    return meta


def cmd_time(args):
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        sys.exit("measure.py time: no command given after --")
    outdir = args.logs or os.path.dirname(os.path.abspath(args.out))
    stdout_path = os.path.join(outdir, args.id + ".out")
    stderr_path = os.path.join(outdir, args.id + ".err")
    gnu_time = shutil.which("time", path="/usr/bin") if args.rss else None
    time_file = None
    if gnu_time:
        fd, time_file = tempfile.mkstemp(prefix="bench-time-")
        os.close(fd)
        cmd = [gnu_time, "-v", "-o", time_file] + cmd
    before = get_stats(args.stats_url) if args.stats_url else None
    record = {"id": args.id, **parse_meta(args.meta), "load1": load1()}
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    record["wall_s"] = round(wall, 4)
    record["exit"] = proc.returncode
    # ru_maxrss is in KiB on Linux. Under /usr/bin/time this is time's own child: use its report.
    record["maxrss_kb"] = usage.ru_maxrss
    record["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 4)
    if time_file:
        with open(time_file) as f:
            text = f.read()
        os.unlink(time_file)
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
        if m:
            record["maxrss_kb"] = int(m.group(1))
            record["rss_source"] = "/usr/bin/time -v"
    else:
        record["rss_source"] = "os.wait4"
    if args.stats_url:
        record["sandbox"] = stats_delta(before, get_stats(args.stats_url))
    with open(args.out, "a") as f:
        f.write(json.dumps(record) + "\n")
    shown = {k: record[k] for k in ("id", "wall_s", "exit", "load1")}
    print("  " + json.dumps(shown), flush=True)
    if proc.returncode != 0:
        print(f"  ! {args.id} exited {proc.returncode}; see {stderr_path}", file=sys.stderr)
    return 0


def proc_cpu_seconds(pid):
    """utime + stime of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def cmd_load(args):
    key = os.environ.get(KEY_ENV, "")
    if not key:
        sys.exit(f"measure.py load: set {KEY_ENV}")
    u = urllib.parse.urlsplit(args.url)
    headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}

    def call(conn, method, path, body=None):
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status // 100 != 2:
            raise RuntimeError(f"{method} {path}: HTTP {resp.status}: {data[:200]!r}")
        return json.loads(data)

    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    domains = call(conn, "GET", "/api/v1/domains")["domains"]
    domain_id = next(d["id"] for d in domains if d["domain_name"] == args.domain)
    conn.close()
    # Bodies are encoded up front so the timed loop is mostly the server's work.
    bodies = []
    for b in range(args.rows // args.batch):
        rows = []
        for i in range(args.batch):
            n = b * args.batch + i
            rows.append({
                "client_row_id": f"r{n}",
                "idempotency_key": f"load-{n}",
                "domain_id": domain_id,
                "long_url": f"https://load.example/p/{n}?utm_source=load",
                "custom_slug": f"load-{n}",
                "redirect_status_code": 302,
            })
        bodies.append(json.dumps({"rows": rows}).encode())
    lock = threading.Lock()
    errors = []
    created = [0]

    def worker():
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        while True:
            with lock:
                if not bodies:
                    break
                body = bodies.pop()
            try:
                res = call(c, "POST", "/api/shorten/bulk", body)
                ok = sum(1 for r in res["results"] if r.get("status") == "created")
                with lock:
                    created[0] += ok
            except Exception as e:  # noqa: BLE001 - recorded, the run is then marked failed
                with lock:
                    errors.append(str(e))
                break
        c.close()

    cpu0 = proc_cpu_seconds(args.pid)
    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    cpu = proc_cpu_seconds(args.pid) - cpu0
    record = {
        "id": args.id,
        **parse_meta(args.meta),
        "load1": load1(),
        "wall_s": round(wall, 4),
        "exit": 1 if errors else 0,
        "rows": args.rows,
        "created": created[0],
        "batch": args.batch,
        "threads": args.threads,
        "rows_per_s": round(created[0] / wall, 1) if wall > 0 else None,
        "sandbox_cpu_s": round(cpu, 3),
        "errors": errors[:3],
    }
    with open(args.out, "a") as f:
        f.write(json.dumps(record) + "\n")
    print("  " + json.dumps({k: record[k] for k in ("id", "wall_s", "rows_per_s", "sandbox_cpu_s", "exit")}), flush=True)
    return 0


def cmd_wait_load(args):
    deadline = time.monotonic() + args.max_wait
    now = load1()
    while now >= args.below and time.monotonic() < deadline:
        time.sleep(5)
        now = load1()
    print(f"{now:.2f}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    t = sub.add_parser("time")
    t.add_argument("--out", required=True)
    t.add_argument("--id", required=True)
    t.add_argument("--meta", action="append", help="k=v stored in the record (v parsed as JSON when it is)")
    t.add_argument("--stats-url", help="sandbox base URL: record the counters' change")
    t.add_argument("--rss", action="store_true", help="peak RSS via /usr/bin/time -v when installed")
    t.add_argument("--logs", help="folder for the command's stdout/stderr (ID.out, ID.err)")
    t.add_argument("cmd", nargs=argparse.REMAINDER)
    lo = sub.add_parser("load")
    lo.add_argument("--out", required=True)
    lo.add_argument("--id", required=True)
    lo.add_argument("--meta", action="append")
    lo.add_argument("--url", required=True)
    lo.add_argument("--domain", required=True)
    lo.add_argument("--pid", required=True, type=int, help="sandbox process id (for its CPU time)")
    lo.add_argument("--rows", type=int, default=10000)
    lo.add_argument("--batch", type=int, default=100)
    lo.add_argument("--threads", type=int, default=4)
    w = sub.add_parser("wait-load")
    w.add_argument("--below", type=float, required=True)
    w.add_argument("--max-wait", type=float, default=60)
    args = ap.parse_args()
    return {"time": cmd_time, "load": cmd_load, "wait-load": cmd_wait_load}[args.what](args)


if __name__ == "__main__":
    sys.exit(main())
