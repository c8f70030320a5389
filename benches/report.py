#!/usr/bin/env python3
"""Turn benches/results/raw.jsonl (written by run.sh via measure.py) into the results table
and the list of targets from issue 5, each met or missed with its figure.

    python3 benches/report.py --raw benches/results/raw.jsonl --out benches/results/latest.md

Bounds: with N links, batches of B rows, C batches in flight and a round trip of L seconds,
no client beats N·L/(B·C); a limit of R requests/s caps it at N/(B·R). The naive baseline
(one request per link, sequential) runs on a subset and is scaled to N linearly.
"""

import argparse
import json
import os
import math
import platform
import statistics
import subprocess
import sys
import time

# Targets from issue 5.
BOUND_RATIO_TARGET = 1.25
# Issue 11: the default build within 1.10× of the physical limit L·(1 + ⌈N/(B·C)⌉) (one
# domain lookup, then the rounds).
LIMIT_RATIO_TARGET = 1.10
SPEEDUP_TARGET = 100.0
RATE_RATIO_TARGET = 1.05  # issue 11
RATE_RETRY_PCT_TARGET = 1.0  # issue 11: at most 1% of requests answered 429
RERUN_SECONDS_TARGET = 1.0
DRYRUN_SECONDS_TARGET = 3.0
DRYRUN_MB_TARGET = 100.0


def machine():
    def read(path):
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return ""

    cpu = next((l.split(":", 1)[1].strip() for l in read("/proc/cpuinfo").splitlines()
                if l.startswith("model name")), platform.processor() or "?")
    mem_kb = next((int(l.split()[1]) for l in read("/proc/meminfo").splitlines()
                   if l.startswith("MemTotal:")), 0)
    try:
        rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        rustc = "?"
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "rustc": rustc or "?",
        "python": platform.python_version(),
    }


def fmt_s(x):
    if x is None:
        return "—"
    return f"{x:.2f} s" if x < 100 else f"{x:.0f} s"


def fmt_ratio(x):
    return "—" if x is None else f"{x:.2f}×"


def fmt_speedup(x):
    return "—" if x is None else f"{x:.0f}×"


def load_range(runs):
    loads = [r["load1"] for r in runs]
    lo, hi = min(loads), max(loads)
    return f"load {lo:.2f}" if lo == hi else f"load {lo:.2f}–{hi:.2f}"


def mark(ok):
    return "**met**" if ok else "**MISSED**"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--suite-seconds", type=int, default=None)
    ap.add_argument("--append", action="append", help="a markdown file to add after the table")
    args = ap.parse_args()

    records = []
    with open(args.raw) as f:
        for line in f:
            if line.strip():
                records.append(json.loads(line))
    by_kind = {}
    for r in records:
        by_kind.setdefault(r.get("kind"), []).append(r)
    failed = [r["id"] for r in records if r.get("exit") != 0]

    naive = (by_kind.get("naive") or [None])[0]
    naive_per_link = naive["wall_s"] / naive["n"] if naive else None

    def scaled_naive(n):
        return naive_per_link * n if naive_per_link else None

    rows = []  # (setting, measured, bound, ratio, speedup, notes)
    targets = []  # (target, ok, figure)

    # 1-2. builds at latency L.
    builds = by_kind.get("build", [])
    # Runs of one setting are grouped; the default setting first.
    groups = {}
    for r in builds:
        groups.setdefault((r["batch"], r["concurrency"]), []).append(r)
    ordered = sorted(groups.values(), key=lambda rs: (not rs[0].get("default"), rs[0]["batch"], rs[0]["concurrency"]))
    defaults = next((rs for rs in ordered if rs[0].get("default")), [])
    for runs in ordered:
        is_default = bool(runs[0].get("default"))
        first = runs[0]
        n, b, c, lat = first["n"], first["batch"], first["concurrency"], first["latency_s"]
        measured = statistics.median(r["wall_s"] for r in runs)
        bound = n * lat / (b * c)
        ratio = measured / bound
        naive_n = scaled_naive(n)
        speedup = naive_n / measured if naive_n else None
        setting = f"build {n:,} links, B={b} C={c}" + (" (default)" if is_default else "")
        notes = []
        if len(runs) > 1:
            notes.append(f"median of {len(runs)}: " + ", ".join(f"{r['wall_s']:.2f}" for r in runs) + " s")
        notes.append(load_range(runs))
        creates = [r.get("sandbox", {}).get("create_requests") for r in runs]
        notes.append(f"{creates[0]} create requests")
        rows.append((setting, measured, bound, ratio, speedup, "; ".join(notes)))
        targets.append((f"{setting}: within {BOUND_RATIO_TARGET}× of N·L/(B·C)",
                        ratio <= BOUND_RATIO_TARGET, f"{ratio:.2f}× ({measured:.2f} s vs {bound:.2f} s)"))
        if is_default and speedup is not None:
            targets.append((f"default build ≥ {SPEEDUP_TARGET:.0f}× faster than the naive script",
                            speedup >= SPEEDUP_TARGET,
                            f"{speedup:.0f}× ({naive_n:.0f} s scaled vs {measured:.2f} s)"))

    # Issue 11: the default build at each latency against L·(1 + ⌈N/(B·C)⌉).
    by_latency = {}
    for r in defaults + by_kind.get("latency", []):
        by_latency.setdefault(r["latency_s"], []).append(r)
    for lat, runs in sorted(by_latency.items()):
        n, b, c = runs[0]["n"], runs[0]["batch"], runs[0]["concurrency"]
        measured = statistics.median(r["wall_s"] for r in runs)
        limit = lat * (1 + math.ceil(n / (b * c)))
        ratio = measured / limit
        setting = f"build {n:,} links, defaults (B={b} C={c}), {lat * 1000:.0f} ms, vs L·(1+⌈N/(B·C)⌉)"
        rows.append((setting, measured, limit, ratio, None,
                     f"median of {len(runs)}: " + ", ".join(f"{r['wall_s']:.2f}" for r in runs)
                     + " s; " + load_range(runs)))
        targets.append((f"issue 11: {n:,} links at {lat * 1000:.0f} ms within {LIMIT_RATIO_TARGET}× of L·(1+⌈N/(B·C)⌉)",
                        ratio <= LIMIT_RATIO_TARGET, f"{ratio:.2f}× ({measured:.2f} s vs {limit:.2f} s)"))

    # One round of requests: what is left is the fixed cost of a run (spec, domain lookup,
    # manifest), not covered by the bound.
    one_round = by_kind.get("one_round", [])
    if one_round:
        first = one_round[0]
        n, b, c, lat = first["n"], first["batch"], first["concurrency"], first["latency_s"]
        measured = statistics.median(r["wall_s"] for r in one_round)
        bound = n * lat / (b * c)
        rows.append((f"build {n:,} links, B={b} C={c} (one round: the fixed cost)", measured, bound,
                     measured / bound, None,
                     f"median of {len(one_round)}; fixed cost ≈ {measured - bound:.2f} s beyond one round trip; "
                     + load_range(one_round)))

    # 3. naive.
    if naive:
        n_scaled = defaults[0]["n"] if defaults else 10000
        lat = naive["latency_s"]
        scaled = scaled_naive(n_scaled)
        bound = n_scaled * lat  # one request at a time: N·L
        rows.append((f"naive script, {naive['n']} links scaled to {n_scaled:,}", scaled, bound,
                     scaled / bound, 1.0,
                     f"{naive['wall_s']:.2f} s for {naive['n']} ({naive_per_link * 1000:.1f} ms/link); "
                     f"bound = N·L, one request at a time; load {naive['load1']:.2f}"))

    # 4. rate limit.
    for r in by_kind.get("rate", []):
        n, b, c, rate = r["n"], r["batch"], r["concurrency"], r["rate"]
        bound = n / (b * rate)
        ratio = r["wall_s"] / bound
        sb = r.get("sandbox", {})
        limited = sb.get("faults", {}).get("rate_limited", 0)
        total = sb.get("total_requests", 0)
        pct = 100.0 * limited / total if total else 0.0
        naive_n = scaled_naive(n)
        speedup = naive_n / r["wall_s"] if naive_n else None
        published = {"none": "budget unpublished", "ietf": "RateLimit-* headers",
                     "x": "X-RateLimit-* headers"}.get(r.get("headers", "none"), r.get("headers"))
        rows.append((f"build {n:,} links, B={b} C={c}, rate limit {rate}/s, {published}", r["wall_s"], bound,
                     ratio, speedup,
                     f"{limited} of {total} requests answered 429 ({pct:.1f}%); load {r['load1']:.2f}"))
        name = f"rate limit {rate}/s, B={b} C={c}, {published}"
        targets.append((f"{name}: within {RATE_RATIO_TARGET}× of N/(B·R)", ratio <= RATE_RATIO_TARGET,
                        f"{ratio:.2f}× ({r['wall_s']:.2f} s vs {bound:.2f} s)"))
        targets.append((f"{name}: 429s ≤ {RATE_RETRY_PCT_TARGET:.0f}% of requests",
                        pct <= RATE_RETRY_PCT_TARGET, f"{pct:.1f}% ({limited} of {total})"))

    # 5. re-run.
    for r in by_kind.get("rerun", []):
        creates = r.get("sandbox", {}).get("create_requests")
        total = r.get("sandbox", {}).get("total_requests")
        rows.append((f"re-run of the completed {r['n']:,}-link build", r["wall_s"], None, None, None,
                     f"{creates} create calls, {total} API request(s) in all; load {r['load1']:.2f}"))
        targets.append((f"no-op re-run < {RERUN_SECONDS_TARGET:.0f} s with zero create calls",
                        r["wall_s"] < RERUN_SECONDS_TARGET and creates == 0,
                        f"{r['wall_s']:.2f} s, {creates} create calls"))

    # 6. dry-run (median time; peak RSS is the largest seen).
    dry = by_kind.get("dryrun", [])
    if dry:
        n = dry[0]["n"]
        measured = statistics.median(r["wall_s"] for r in dry)
        mb = max(r["maxrss_kb"] for r in dry) / 1024
        cpu = statistics.median(r["cpu_s"] for r in dry)
        times = ", ".join(f"{r['wall_s']:.2f}" for r in dry)
        rows.append((f"dry-run {n:,} links to jsonl (offline)", measured, None, None, None,
                     f"median of {len(dry)}: {times} s; peak RSS {mb:.0f} MB ({dry[0].get('rss_source')}); "
                     f"CPU {cpu:.2f} s (user+sys, all threads); " + load_range(dry)))
        targets.append((f"{n:,}-link dry-run < {DRYRUN_SECONDS_TARGET:.0f} s and < {DRYRUN_MB_TARGET:.0f} MB",
                        measured < DRYRUN_SECONDS_TARGET and mb < DRYRUN_MB_TARGET,
                        f"{measured:.2f} s, {mb:.0f} MB"))

    # 7. sandbox throughput.
    fastest_bound = min((r["n"] * r["latency_s"] / (r["batch"] * r["concurrency"]) for r in builds), default=None)
    needed = builds[0]["n"] / fastest_bound if builds and fastest_bound else None
    for r in by_kind.get("sandbox_load", []):
        rows.append((f"sandbox alone, 0 ms latency: {r['rows']:,} rows as {r['batch']}-row bulk POSTs, "
                     f"{r['threads']} threads", r["wall_s"], None, None, None,
                     f"{r['rows_per_s']:,.0f} rows/s; sandbox CPU {r['sandbox_cpu_s']:.2f} s; load {r['load1']:.2f}"))
        if needed:
            targets.append(("the sandbox is not the bottleneck (its rows/s vs the fastest bound's rows/s)",
                            r["rows_per_s"] >= 2 * needed,
                            f"{r['rows_per_s']:,.0f} rows/s available vs {needed:,.0f} rows/s needed"))
    for r in by_kind.get("zero", []):
        rows.append((f"build {r['n']:,} links, B={r['batch']} C={r['concurrency']}, 0 ms latency",
                     r["wall_s"], None, None, None,
                     f"{r['n'] / r['wall_s']:,.0f} rows/s end to end; load {r['load1']:.2f}"))

    m = machine()
    out = []
    out.append(f"Run {time.strftime('%Y-%m-%d %H:%M %Z')} — {m['nproc']} CPUs ({m['cpu']}), "
               f"{m['memory_gib']} GiB RAM, Linux {m['kernel']}, {m['rustc']}, Python {m['python']}\n")
    if args.suite_seconds is not None:
        out.append(f"Suite wall time: {args.suite_seconds} s (release build included).\n")
    out.append("")
    out.append("| setting | measured | bound | measured/bound | speed-up vs naive | notes |")
    out.append("|---|---:|---:|---:|---:|---|")
    for setting, measured, bound, ratio, speedup, notes in rows:
        out.append(f"| {setting} | {fmt_s(measured)} | {fmt_s(bound)} | {fmt_ratio(ratio)} | "
                   f"{fmt_speedup(speedup)} | {notes} |")
    out.append("")
    out.append("Targets (issues 5 and 11):\n")
    for name, ok, figure in targets:
        out.append(f"- {mark(ok)} {name}: {figure}")
    if failed:
        out.append("")
        out.append(f"**Runs that exited non-zero (their figures are not valid):** {', '.join(failed)}")
    for extra in args.append or []:
        try:
            with open(extra) as f:
                out.append("")
                out.append(f.read().rstrip())
        except OSError as e:
            out.append(f"\n(missing section {extra}: {e})")
    text = "\n".join(out) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
