#!/usr/bin/env bash
# The benchmark suite (issues 5 and 11): `build` against the local sandbox with injected
# latency, next to the bounds N·L/(B·C) and L·(1+⌈N/(B·C)⌉) (at 50 and 100 ms, and the
# absolute time at 0 ms), a naive one-request-per-link script, rate limits with and without
# published budgets, a no-op re-run, a 1,000,000-link dry-run next to a bare serde_json
# writer of the same bytes (benches/dryrun_vs_bare.sh), the manifest at 1k/10k/100k links
# (benches/manifest_scale.sh), and the sandbox's own throughput.
#
#   bash benches/run.sh            # whole suite, about 5 minutes; prints the table
#
# Writes benches/results/latest.md (the table) and benches/results/raw.jsonl (every
# measurement). Needs cargo and python3 (stdlib only); uses /usr/bin/time -v when present.
# Knobs (env): BENCH_LATENCY_MS (50), BENCH_LATENCY2_MS (100), BENCH_RATE (10),
# BENCH_NAIVE_LINKS (200), BENCH_REPEAT (3, runs of each build setting; the median is
# reported), BENCH_WAIT_LOAD (90, seconds to wait for a quiet machine first),
# BENCH_SKIP_BUILD (1 = use the existing release binaries).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/benches"
RESULTS="$BENCH/results"
BIN="$ROOT/target/release/nimriz-matrix"
LATENCY_MS="${BENCH_LATENCY_MS:-50}"
LATENCY2_MS="${BENCH_LATENCY2_MS:-100}"
RATE="${BENCH_RATE:-10}"
NAIVE_LINKS="${BENCH_NAIVE_LINKS:-200}"
REPEAT="${BENCH_REPEAT:-3}"
WAIT_LOAD="${BENCH_WAIT_LOAD:-90}"
N=10000
N_BIG=1000000
DOMAIN="bench.sandbox.test"
NAIVE_DOMAIN="naive.sandbox.test"
LOAD_DOMAIN="load.sandbox.test"
export NIMRIZ_API_KEY="nmz_sandbox_key" # the sandbox's fixed local test key, not a real one
# Production retry timing: a benchmark must not shorten backoff or Retry-After.
unset NIMRIZ_MATRIX_RETRY_BASE_MS

WORK="$(mktemp -d "${TMPDIR:-/tmp}/nimriz-bench.XXXXXX")"
SANDBOX_PID=""
cleanup() {
    stop_sandbox
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n== %s\n' "$*"; }
m() { python3 "$BENCH/measure.py" "$@"; }
# measure.py time, with the commands' output kept out of the results folder.
mt() { python3 "$BENCH/measure.py" time --logs "$WORK" "$@"; }

# start_sandbox LATENCY_MS [extra flags...]: a fresh, empty sandbox on a free loopback port.
# Sets SANDBOX_URL and SANDBOX_PID.
start_sandbox() {
    local latency="$1"
    shift
    stop_sandbox
    local out="$WORK/sandbox.out"
    : >"$out"
    "$BIN" sandbox --addr 127.0.0.1:0 --latency-ms "$latency" \
        --domain "$DOMAIN,$NAIVE_DOMAIN,$LOAD_DOMAIN" "$@" >"$out" 2>"$WORK/sandbox.err" &
    SANDBOX_PID=$!
    local i
    for i in $(seq 1 100); do
        if head -n1 "$out" | grep -q '^nimriz sandbox listening on http://'; then
            SANDBOX_URL="$(head -n1 "$out" | sed 's/^nimriz sandbox listening on //')"
            export NIMRIZ_API_BASE="$SANDBOX_URL"
            return 0
        fi
        if ! kill -0 "$SANDBOX_PID" 2>/dev/null; then break; fi
        sleep 0.05
    done
    echo "the sandbox did not start; its stderr:" >&2
    cat "$WORK/sandbox.err" >&2
    exit 1
}

stop_sandbox() {
    if [[ -n "$SANDBOX_PID" ]]; then
        kill "$SANDBOX_PID" 2>/dev/null || true
        wait "$SANDBOX_PID" 2>/dev/null || true
        SANDBOX_PID=""
    fi
}

# build_run ID B C [meta...]: `build` of the 10k spec into a fresh manifest, against the
# running sandbox, timed, with the sandbox's counters before/after.
build_run() {
    local id="$1" b="$2" c="$3"
    shift 3
    mt --out "$RAW" --id "$id" --stats-url "$SANDBOX_URL" \
        --meta n=$N --meta batch=$b --meta concurrency=$c "$@" \
        -- "$BIN" build "$WORK/spec10k.toml" --manifest "$WORK/$id.manifest.json" \
        --batch-size "$b" --concurrency "$c"
}

mkdir -p "$RESULTS"
RAW="$RESULTS/raw.jsonl"
: >"$RAW"
SUITE_START=$(date +%s)

say "release build"
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    (cd "$ROOT" && cargo build --release --quiet && cargo build --release --quiet -p bare-dryrun)
fi
[[ -x "$BIN" ]] || { echo "no release binary at $BIN" >&2; exit 1; }

say "specs"
python3 "$BENCH/gen_spec.py" --links $N --domain "$DOMAIN" --out "$WORK/spec10k.toml"
"$BIN" build "$WORK/spec10k.toml" --dry-run --format jsonl --output "$WORK/plan10k.jsonl" -q

say "waiting up to ${WAIT_LOAD}s for a quiet machine (1-min load < 1.0)"
echo "load: $(m wait-load --below 1.0 --max-wait "$WAIT_LOAD")"
L_S=$(python3 -c "print($LATENCY_MS/1000)")

say "1. build of $N links at ${LATENCY_MS} ms latency, each setting $REPEAT times (fresh sandbox per run)"
# Rounds rather than one setting at a time, so a burst of load from elsewhere on the
# machine lands on different settings instead of all runs of one.
for i in $(seq 1 "$REPEAT"); do
    for setting in "100 4" "50 4" "100 8" "200 2"; do
        read -r b c <<<"$setting"
        start_sandbox "$LATENCY_MS"
        build_run "build-b$b-c$c-$i" "$b" "$c" --meta kind=build --meta latency_s="$L_S" \
            --meta default="$([[ "$b $c" == "100 4" ]] && echo true || echo false)"
        if [[ "$b $c" == "100 4" && "$i" == "$REPEAT" ]]; then
            say "5. re-run of the completed default build (no-op), same sandbox and manifest"
            mt --out "$RAW" --id rerun --stats-url "$SANDBOX_URL" \
                --meta kind=rerun --meta n=$N --meta latency_s="$L_S" \
                -- "$BIN" build "$WORK/spec10k.toml" --manifest "$WORK/build-b$b-c$c-$i.manifest.json"
        fi
    done
done

say "1b. the default build at ${LATENCY2_MS} ms latency, $REPEAT times (issue 11: vs L·(1+⌈N/(B·C)⌉))"
L2_S=$(python3 -c "print($LATENCY2_MS/1000)")
for i in $(seq 1 "$REPEAT"); do
    start_sandbox "$LATENCY2_MS"
    build_run "build-l$LATENCY2_MS-$i" 100 4 --meta kind=latency --meta latency_s="$L2_S"
done

say "fixed cost: the same 10,000 links in one round (10 batches of 1,000 in flight at once)"
for i in $(seq 1 "$REPEAT"); do
    start_sandbox "$LATENCY_MS"
    build_run "build-one-round-$i" 1000 10 --meta kind=one_round --meta latency_s="$L_S"
done

say "3. naive baseline: $NAIVE_LINKS links, one POST /api/shorten each, sequential"
start_sandbox "$LATENCY_MS"
mt --out "$RAW" --id naive --stats-url "$SANDBOX_URL" \
    --meta kind=naive --meta n=$NAIVE_LINKS --meta latency_s="$L_S" \
    -- python3 "$BENCH/naive_baseline.py" --plan "$WORK/plan10k.jsonl" \
    --limit "$NAIVE_LINKS" --domain "$NAIVE_DOMAIN"

say "4. build under --rate-limit $RATE req/s: default concurrency and 8; budget unpublished, IETF RateLimit-*, X-RateLimit-*"
# One run each (6 × ~10 s): the 429 counts are the figure, and they vary less than wall time.
for headers in none ietf x; do
    for c in 4 8; do
        start_sandbox "$LATENCY_MS" --rate-limit "$RATE" --rate-headers "$headers"
        build_run "rate-limited-$headers-c$c" 100 "$c" --meta kind=rate --meta rate=$RATE \
            --meta headers="$headers" --meta latency_s="$L_S"
    done
done

say "6. dry-run of $N_BIG links to JSON Lines next to a bare serde_json writer of the same bytes (benches/dryrun_vs_bare.sh)"
BENCH_WAIT_LOAD=0 bash "$BENCH/dryrun_vs_bare.sh" | tee "$WORK/dryrun.md"

say "7. the sandbox alone, zero latency"
start_sandbox 0
m load --out "$RAW" --id sandbox-load --url "$SANDBOX_URL" --domain "$LOAD_DOMAIN" \
    --pid "$SANDBOX_PID" --rows $N --batch 100 --threads 4 --meta kind=sandbox_load
start_sandbox 0
build_run "build-zero-latency" 100 4 --meta kind=zero --meta latency_s=0
stop_sandbox

say "8. the manifest at 1k / 10k / 100k links: builds and no-op re-runs at 0 ms (benches/manifest_scale.sh)"
BENCH_BINS="this=$BIN" bash "$BENCH/manifest_scale.sh" | tee "$WORK/scale.md"

SUITE_END=$(date +%s)
say "results"
python3 "$BENCH/report.py" --raw "$RAW" --out "$RESULTS/latest.md" \
    --suite-seconds $((SUITE_END - SUITE_START)) \
    --append "$WORK/dryrun.md" --append "$WORK/scale.md"
