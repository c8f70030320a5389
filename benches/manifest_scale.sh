#!/usr/bin/env bash
# The manifest at scale (issue 11): builds of 1k / 10k / 100k links against the local
# sandbox at 0 ms latency, then the no-op re-run of each (every link recorded as done),
# with wall time, peak RSS and manifest size, and the same figures per link. A re-run that
# sends any create request stops the script (it would not be a no-op).
#
#   bash benches/manifest_scale.sh                      # the release binary of this tree
#   BENCH_BINS="main=/tmp/nm-main new=target/release/nimriz-matrix" bash benches/manifest_scale.sh
#
# Knobs (env): BENCH_BINS (space-separated NAME=PATH pairs, measured in alternating rounds
# so load from elsewhere lands on both sides; default `new=target/release/nimriz-matrix`),
# BENCH_SIZES ("1000 10000 100000"), BENCH_REPEAT (3; the median is reported, with the
# range). Needs python3 (stdlib) and /usr/bin/time (GNU, for peak RSS). Does not build:
# run `cargo build --release` first.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/benches"
BINS="${BENCH_BINS:-new=$ROOT/target/release/nimriz-matrix}"
SIZES="${BENCH_SIZES:-1000 10000 100000}"
REPEAT="${BENCH_REPEAT:-3}"
DOMAIN="scale.sandbox.test"
export NIMRIZ_API_KEY="nmz_sandbox_key" # the sandbox's fixed local test key, not a real one
unset NIMRIZ_MATRIX_RETRY_BASE_MS

[[ -x /usr/bin/time ]] || { echo "needs GNU /usr/bin/time for peak RSS" >&2; exit 1; }
for pair in $BINS; do
    [[ -x "${pair#*=}" ]] || { echo "no binary at ${pair#*=} (cargo build --release?)" >&2; exit 1; }
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/nimriz-scale.XXXXXX")"
SANDBOX_PID=""
stop_sandbox() {
    if [[ -n "$SANDBOX_PID" ]]; then
        kill "$SANDBOX_PID" 2>/dev/null || true
        wait "$SANDBOX_PID" 2>/dev/null || true
        SANDBOX_PID=""
    fi
}
cleanup() {
    stop_sandbox
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_sandbox BIN: a fresh, empty sandbox at 0 ms on a free loopback port.
start_sandbox() {
    local bin="$1" out="$WORK/sandbox.out" i
    stop_sandbox
    : >"$out"
    "$bin" sandbox --addr 127.0.0.1:0 --latency-ms 0 --domain "$DOMAIN" -q \
        >"$out" 2>"$WORK/sandbox.err" &
    SANDBOX_PID=$!
    for i in $(seq 1 200); do
        if head -n1 "$out" | grep -q '^nimriz sandbox listening on http://'; then
            export NIMRIZ_API_BASE="$(head -n1 "$out" | sed 's/^nimriz sandbox listening on //')"
            return 0
        fi
        kill -0 "$SANDBOX_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "the sandbox did not start; its stderr:" >&2
    cat "$WORK/sandbox.err" >&2
    exit 1
}

# creates: create requests the running sandbox has answered so far.
creates() {
    python3 - "$NIMRIZ_API_BASE" <<'PY'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1].rstrip("/") + "/__sandbox/stats", timeout=10) as r:
    req = json.loads(r.read())["requests"]
print(req.get("POST /api/shorten", 0) + req.get("POST /api/shorten/bulk", 0))
PY
}

RAW="$WORK/raw.tsv"
: >"$RAW"
# timed NAME N KIND CMD...: run once; append "name n kind wall_s peak_kb exit manifest_bytes".
timed() {
    local name="$1" n="$2" kind="$3" manifest="$4"
    shift 4
    local tf="$WORK/time.txt" rc=0
    /usr/bin/time -f '%e %M' -o "$tf" "$@" >"$WORK/last.out" 2>"$WORK/last.err" || rc=$?
    if [[ "$rc" != 0 ]]; then
        echo "$name $kind $n failed (exit $rc):" >&2
        tail -n 5 "$WORK/last.err" >&2
        exit 1
    fi
    read -r wall kb < <(tail -n1 "$tf")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$n" "$kind" "$wall" "$kb" \
        "$(stat -c %s "$manifest")" >>"$RAW"
}

for n in $SIZES; do
    python3 "$BENCH/gen_spec.py" --links "$n" --domain "$DOMAIN" --out "$WORK/spec$n.toml"
done

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq 1 "$REPEAT"); do
    for n in $SIZES; do
        for pair in $BINS; do
            name="${pair%%=*}" bin="${pair#*=}"
            manifest="$WORK/$name-$n-$i.manifest.json"
            start_sandbox "$bin"
            timed "$name" "$n" build "$manifest" \
                "$bin" build "$WORK/spec$n.toml" --manifest "$manifest" -q
            before="$(creates)"
            timed "$name" "$n" rerun "$manifest" \
                "$bin" build "$WORK/spec$n.toml" --manifest "$manifest" -q
            if [[ "$(creates)" != "$before" ]]; then
                echo "$name: the re-run of $n links sent create requests (not a no-op)" >&2
                exit 1
            fi
            stop_sandbox
            rm -f "$manifest"
        done
    done
    echo "round $i of $REPEAT done (load $(cut -d' ' -f1 /proc/loadavg))" >&2
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$RAW" <<'EOF'
import statistics, sys
from collections import defaultdict

rows = defaultdict(list)
for line in open(sys.argv[1]):
    name, n, kind, wall, kb, mbytes = line.split("\t")
    rows[(name, int(n), kind)].append((float(wall), int(kb) / 1024, int(mbytes) / 1e6))

def med(xs):
    return statistics.median(xs)

def rng(xs, fmt):
    return f"{fmt.format(med(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"

names = list(dict.fromkeys(k[0] for k in rows))
sizes = sorted({k[1] for k in rows})
print()
print("| binary | links | build s | build peak MB | manifest MB | re-run s | re-run peak MB "
      "| build µs/link | build KB/link | manifest B/link | re-run µs/link |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for name in names:
    for n in sizes:
        b, r = rows.get((name, n, "build")), rows.get((name, n, "rerun"))
        if not b or not r:
            continue
        bw, bm, mb = [x[0] for x in b], [x[1] for x in b], [x[2] for x in b]
        rw, rm = [x[0] for x in r], [x[1] for x in r]
        print(f"| {name} | {n:,} | {rng(bw, '{:.2f}')} | {rng(bm, '{:.0f}')} | {med(mb):.1f} "
              f"| {rng(rw, '{:.2f}')} | {rng(rm, '{:.0f}')} | {med(bw) / n * 1e6:.0f} "
              f"| {med(bm) * 1024 / n:.2f} | {med(mb) * 1e6 / n:.0f} | {med(rw) / n * 1e6:.1f} |")
EOF
