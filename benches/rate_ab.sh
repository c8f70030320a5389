#!/usr/bin/env bash
# Rate-limited 10k-link builds, NEW_BIN against OLD_BIN (defaults: this checkout's release binary, /work/main's), alternating.
# usage: benches/rate_ab.sh HEADERS C REPS   (HEADERS: none|ietf|x; prints one line per run)
set -euo pipefail
HEADERS="${1:-x}"; C="${2:-4}"; REPS="${3:-3}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
NEW="${NEW_BIN:-$HERE/target/release/nimriz-matrix}"
OLD="${OLD_BIN:-/work/main/target/release/nimriz-matrix}"
W="$(mktemp -d /tmp/rate-throttle.XXXXXX)"
SB=""
trap '[[ -n "$SB" ]] && kill "$SB" 2>/dev/null; rm -rf "$W"' EXIT
python3 "$HERE/benches/gen_spec.py" --links 10000 --domain bench.sandbox.test --out "$W/spec.toml"
export NIMRIZ_API_KEY=nmz_sandbox_key
unset NIMRIZ_MATRIX_RETRY_BASE_MS
one() {
    local side="$1" bin="$2" i="$3"
    : >"$W/sb.out"
    "$bin" sandbox --addr 127.0.0.1:0 --domain bench.sandbox.test --latency-ms 50 \
        --rate-limit 10 --rate-headers "$HEADERS" >"$W/sb.out" 2>"$W/sb.err" &
    SB=$!
    for _ in $(seq 1 100); do
        grep -q 'listening on' "$W/sb.out" && break
        sleep 0.05
    done
    local url
    url="$(head -n1 "$W/sb.out" | sed 's/^nimriz sandbox listening on //')"
    rm -f "$W/m.json"
    local t0 t1 rc=0
    t0=$(date +%s.%N)
    NIMRIZ_API_BASE="$url" "$bin" build "$W/spec.toml" --concurrency "$C" -q --manifest "$W/m.json" || rc=$?
    t1=$(date +%s.%N)
    curl -s "$url/__sandbox/stats" >"$W/stats.json"
    kill "$SB"; wait "$SB" 2>/dev/null || true; SB=""
    python3 - "$side" "$i" "$t0" "$t1" "$rc" "$W/stats.json" "$HEADERS" "$C" <<'PY'
import json, sys
side, i, t0, t1, rc, stats, h, c = sys.argv[1:]
s = json.load(open(stats))
req = sum(s["requests"].values()) if isinstance(s["requests"], dict) else s["requests"]
rl = s["faults"]["rate_limited"]
wall = float(t1) - float(t0)
load = open("/proc/loadavg").read().split()[0]
print(f"{side:4} headers={h} C={c} run={i} wall={wall:.2f}s ratio={wall/10:.3f}x 429s={rl}/{req} ({100*rl/req:.1f}%) rc={rc} load={load}")
PY
}
for i in $(seq 1 "$REPS"); do
    one main "$OLD" "$i"
    one new "$NEW" "$i"
done
