#!/usr/bin/env bash
# Every benchmark in one command, one table at the end: signed-webhook ingest vs a no-op
# axum baseline (SQLite and PostgreSQL), normalise throughput and lag, reply latency, the
# inbox API's p99 on the seeded 1M-message data set, peak RSS, multi-node. See bench/README.md.
#
#   bench/all.sh                 # full run (the seeded data set is cached in target/bench-cache)
#   bench/all.sh --quick         # a few minutes
#   bench/all.sh --only ingest,api --pg-url postgres://postgres@127.0.0.1:5432/postgres
set -euo pipefail
command -v python3 >/dev/null || { echo "bench/all.sh: python3 is required" >&2; exit 2; }
exec python3 "$(dirname "${BASH_SOURCE[0]}")/all.py" "$@"
