#!/bin/sh
# Acknowledgements/s and p50/p99 ack latency of `listen` on loopback, with and without
# group commit. Durable queue on $BENCH_DIR (default: the system temp folder).
# Usage: benches/listen_ack.sh [EVENTS] [CONCURRENCY]
set -eu
EVENTS=${1:-20000}
CONC=${2:-64}
cargo build --release -p nimriz-listen --example listen_bench
echo "== group commit (write batch up to 256)"
target/release/examples/listen_bench "$EVENTS" "$CONC" 256
echo "== one commit per request (write batch 1)"
target/release/examples/listen_bench "$((EVENTS / 4))" "$CONC" 1
echo "== single sender (latency floor)"
target/release/examples/listen_bench "$((EVENTS / 10))" 1 256
