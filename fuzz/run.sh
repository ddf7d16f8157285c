#!/usr/bin/env bash
# Builds the libFuzzer targets with stable cargo and runs each one, bounded.
#
#   fuzz/run.sh                      every target, 10 s each (what CI runs)
#   fuzz/run.sh -t 300 mime slack    the named targets, 5 minutes each
#   fuzz/run.sh -b                   build only
#
# This is what `cargo fuzz run <target> -- -max_total_time=N` does with `--sanitizer none`,
# without needing cargo-fuzz or a nightly toolchain: the coverage instrumentation flags are
# stable `-C` flags. Crashes are kept in fuzz/artifacts/<target>/, the growing corpus in
# fuzz/corpus/<target>/ (seeded from the connectors' test fixtures by fuzz/seed.py).
# One job per target, one target at a time: the machine is small and shared.
set -euo pipefail
cd "$(dirname "$0")"

secs=10
build_only=0
while getopts "t:b" opt; do
  case $opt in
    t) secs=$OPTARG ;;
    b) build_only=1 ;;
    *) echo "usage: $0 [-t seconds] [-b] [target ...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))

triple=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# The same instrumentation cargo-fuzz adds (sancov with 8-bit counters, PC table and compare
# tracing) plus `cfg(fuzzing)`. Passing `--target` keeps the flags off build scripts and
# proc-macros, which must not be instrumented.
export RUSTFLAGS="${RUSTFLAGS:-} --cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares \
-Cdebug-assertions -Coverflow-checks"

all=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^switchboard-fuzz$')
targets=${*:-$all}

echo "building fuzz targets ($triple, release, instrumented)"
cargo build --locked --release --target "$triple" --bins
[ "$build_only" -eq 1 ] && exit 0

python3 seed.py >/dev/null
failed=()
for t in $targets; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "== fuzz $t for ${secs}s"
  # -rss_limit_mb / -malloc_limit_mb: a runaway allocation on input is a finding too.
  if ! "$CARGO_TARGET_DIR/$triple/release/$t" "corpus/$t" \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
      -max_len=65536 -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
      2> "artifacts/$t.log"; then
    tail -n 60 "artifacts/$t.log" >&2
    failed+=("$t")
  fi
  grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done)' "artifacts/$t.log" \
    | tr '\n' ' ' || true
  echo
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "FAIL: fuzz targets crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: no crash in $(echo "$targets" | wc -w) targets"
