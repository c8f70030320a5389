#!/bin/sh
# `listen` under load (issue 17): acks/s and p50/p99 next to a minimal hyper baseline, with
# the worker idle / fast / slow / down, open-loop 200 req/s with 20k jobs queued and right
# after a 120k-event burst, and drain.
# Usage: [REPS=3] [N=10000] [SENDERS=1,16,64] [MODES=idle,fast,slow,down] [ONLY=closed,open,burst,drain,fleet] [BURST=120000] [BURST_REPS=REPS]
#        [PROFILE=/folder] [BENCH_DIR=/path] sh benches/listen_load.sh
set -eu
uptime
cargo bench --bench listen_load
uptime
