#!/usr/bin/env bash
# The 1,000,000-link dry-run next to a bare serde_json writer of the same bytes (issue 11).
#
#   bash benches/dryrun_vs_bare.sh        # about a minute, plus the release build
#
# Builds `nimriz-matrix` and `benches/bare-dryrun` in release, generates the spec with
# `benches/gen_spec.py --shape brands` (10 brands × 100 channels × 1,000 variants, CSV-free,
# brand site and short domain as attributes, channel source/medium, four UTMs, slug
# `{brand}-{channel}-{variant}`), then runs `nimriz-matrix build SPEC --dry-run --format
# jsonl --output F` and `bare-dryrun` alternately, REPEAT times each, checks with `cmp` that
# both wrote the same bytes, and prints a markdown table of medians (wall s, CPU s =
# user + sys of all threads, peak RSS from /usr/bin/time -v) with ranges and the ratio
# dry-run / bare. Knobs (env): BENCH_REPEAT (3), BENCH_BRANDS (10), BENCH_CHANNELS (100),
# BENCH_VARIANTS (1000), BENCH_SKIP_BUILD (1 = use the existing release binaries),
# BENCH_WAIT_LOAD (60: seconds to wait for the 1-minute load to drop below 1.0 first),
# BENCH_BIN (another nimriz-matrix binary to measure, e.g. one built from main).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BENCH_BIN:-$ROOT/target/release/nimriz-matrix}"
BARE="$ROOT/target/release/bare-dryrun"
REPEAT="${BENCH_REPEAT:-3}"
BRANDS="${BENCH_BRANDS:-10}"
CHANNELS="${BENCH_CHANNELS:-100}"
VARIANTS="${BENCH_VARIANTS:-1000}"
WAIT_LOAD="${BENCH_WAIT_LOAD:-60}"
DOMAIN="bench.test"
CAMPAIGN="bench"

if [ ! -x /usr/bin/time ]; then
    echo "dryrun_vs_bare: needs /usr/bin/time (GNU time, for -v)" >&2
    exit 2
fi
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release -q -p nimriz-matrix -p bare-dryrun)
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/nimriz-dryrun-bench.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

load1() { cut -d' ' -f1 /proc/loadavg; }
waited=0
while [ "$waited" -lt "$WAIT_LOAD" ] && python3 -c "import sys; sys.exit(0 if float('$(load1)') >= 1.0 else 1)"; do
    sleep 5
    waited=$((waited + 5))
done

python3 "$ROOT/benches/gen_spec.py" --shape brands --brands "$BRANDS" --channels "$CHANNELS" \
    --variants "$VARIANTS" --domain "$DOMAIN" --campaign "$CAMPAIGN" --out "$WORK/spec.toml"

# run NAME CMD...: one timed run; appends "name wall cpu peak_kb load" to $WORK/runs.
run() {
    local name="$1"
    shift
    local load
    load="$(load1)"
    /usr/bin/time -v -o "$WORK/time.txt" "$@" >/dev/null 2>"$WORK/$name.err" || {
        echo "dryrun_vs_bare: $name failed:" >&2
        cat "$WORK/$name.err" "$WORK/time.txt" >&2
        exit 1
    }
    python3 - "$WORK/time.txt" "$name" "$load" >>"$WORK/runs" <<'PY'
import sys
t = {}
for line in open(sys.argv[1]):
    k, _, v = line.strip().rpartition(": ")
    t[k] = v
wall = t["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":")
secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
cpu = float(t["User time (seconds)"]) + float(t["System time (seconds)"])
print(sys.argv[2], f"{secs:.2f}", f"{cpu:.2f}", t["Maximum resident set size (kbytes)"], sys.argv[3])
PY
}

for i in $(seq 1 "$REPEAT"); do
    rm -f "$WORK/dry.jsonl" "$WORK/bare.jsonl"
    run dryrun "$BIN" build "$WORK/spec.toml" --dry-run --format jsonl --output "$WORK/dry.jsonl" -q
    run bare "$BARE" "$BRANDS" "$CHANNELS" "$VARIANTS" "$DOMAIN" "$CAMPAIGN" "$WORK/bare.jsonl"
    if ! cmp -s "$WORK/dry.jsonl" "$WORK/bare.jsonl"; then
        echo "dryrun_vs_bare: run $i: the dry-run and the bare writer wrote different bytes" >&2
        cmp "$WORK/dry.jsonl" "$WORK/bare.jsonl" >&2 || true
        exit 1
    fi
done
BYTES="$(stat -c %s "$WORK/dry.jsonl")"

python3 - "$WORK/runs" "$BYTES" "$((BRANDS * CHANNELS * VARIANTS))" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, wall, cpu, kb, load = line.split()
    runs.setdefault(name, []).append((float(wall), float(cpu), int(kb) / 1024, float(load)))
n, size = int(sys.argv[3]), int(sys.argv[2])
med = lambda xs: statistics.median(xs)
def cells(rs, i, fmt):
    xs = [r[i] for r in rs]
    return f"{fmt.format(med(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"
print(f"\n{n:,} links, {size / 1e6:.0f} MB of JSON Lines, identical bytes (cmp); medians of {len(runs['bare'])}, range in brackets\n")
print("| program | wall s | CPU s | peak MB | wall / bare | load (1 min) |")
print("|---|---:|---:|---:|---:|---|")
bare_wall = med([r[0] for r in runs["bare"]])
for name, label in (("dryrun", "`nimriz-matrix build --dry-run --format jsonl`"), ("bare", "bare serde_json writer (benches/bare-dryrun)")):
    rs = runs[name]
    ratio = med([r[0] for r in rs]) / bare_wall
    loads = [r[3] for r in rs]
    print(f"| {label} | {cells(rs, 0, '{:.2f}')} | {cells(rs, 1, '{:.2f}')} | {cells(rs, 2, '{:.0f}')} | {ratio:.2f}× | {min(loads):.2f}–{max(loads):.2f} |")
pairs = [d[0] / b[0] for d, b in zip(runs["dryrun"], runs["bare"])]
print(f"\nper-pair ratios (each dry-run over the bare run after it): {', '.join(f'{p:.2f}×' for p in pairs)}")
PY
