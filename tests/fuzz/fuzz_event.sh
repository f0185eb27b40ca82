#!/usr/bin/env bash
# Fuzzes event.c's JSON scanner against jansson with libFuzzer (clang) for
# SECONDS (default 60), starting from the bodies in tests/fuzz/corpus/event.
# Not part of scripts/test.sh (it needs clang); test_event covers the same
# property on fixed cases and their mutations.
#
# usage: tests/fuzz/fuzz_event.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_TO_RUN=${1:-60}
scripts/setup.sh
if ! command -v clang >/dev/null; then
  run() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
  run apt-get install -y -qq --no-install-recommends clang >/dev/null ||
    { run apt-get update -qq && run apt-get install -y -qq --no-install-recommends clang >/dev/null; }
fi
out=build-fuzz
mkdir -p "$out"
clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude \
  tests/fuzz/fuzz_event.c src/gate/event.c src/base/util.c src/base/error.c \
  $(pkg-config --cflags --libs jansson) -lm -o "$out/fuzz_event"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp tests/fuzz/corpus/event/* "$work/"
"$out/fuzz_event" -max_total_time="$SECONDS_TO_RUN" -max_len=4096 "$work"
