#!/usr/bin/env bash
# Builds the libFuzzer targets (build-fuzz: clang, -DSG_FUZZ=ON) and runs
# TARGET (fuzz_TARGET.c; "all" runs each in turn) for SECONDS, default
# SG_FUZZ_SECONDS or 30, from a copy of tests/fuzz/corpus/TARGET, so the
# seeds in the tree stay as they are. Fails on any crash, leak, timeout or
# sanitizer report; the input that caused it is kept in
# build-fuzz/findings/TARGET/ (replay: build-fuzz/tests/fuzz/fuzz_TARGET FILE).
# Needs clang (scripts/setup.sh installs it); scripts/test.sh runs "all".
#
# usage: tests/fuzz/run.sh TARGET|all [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
targets=(event rdb config redis_url resp)
target=${1:?usage: tests/fuzz/run.sh TARGET|all [SECONDS] (targets: ${targets[*]})}
seconds=${2:-${SG_FUZZ_SECONDS:-30}}
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: SECONDS must be a whole number above 0, not '$seconds'" >&2; exit 2; }
if [[ $target == all ]]; then
  run=("${targets[@]}")
elif [[ " ${targets[*]} " == *" $target "* ]]; then
  run=("$target")
else
  echo "run.sh: no fuzz target '$target' (targets: ${targets[*]})" >&2
  exit 2
fi
command -v clang >/dev/null || { echo "run.sh: clang not found (scripts/setup.sh installs it)" >&2; exit 1; }

build=${FUZZ_BUILD_DIR:-build-fuzz}
CC=clang cmake -S . -B "$build" -DSG_FUZZ=ON -DSG_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target "${run[@]/#/fuzz_}"

# A leak or a UBSan report fails the run like a crash does.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in "${run[@]}"; do
  findings=$build/findings/$t
  mkdir -p "$work/$t" "$findings"
  cp tests/fuzz/corpus/"$t"/* "$work/$t/"
  echo "run.sh: fuzz_$t for ${seconds}s from $(ls "$work/$t" | wc -l) seeds"
  if ! "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$findings/" "$work/$t" >"$work/$t.log" 2>&1; then
    tail -n 60 "$work/$t.log" >&2
    echo "run.sh: fuzz_$t failed; the input is in $findings/" >&2
    exit 1
  fi
  grep -E '^#[0-9]+.*DONE|^stat::(number_of_executed_units|average_exec_per_sec)' "$work/$t.log" || true
done
