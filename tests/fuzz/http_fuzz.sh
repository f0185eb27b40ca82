#!/usr/bin/env bash
# The HTTP fuzzer of test_gate_fuzz_http.sh for longer: COUNT mutated
# requests (default 100000) against the sanitizer build's gate, checked the
# same way; SEED repeats a run. Not part of scripts/test.sh (it runs 3,000).
#
# usage: tests/fuzz/http_fuzz.sh [COUNT] [SEED]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD_DIR:-build-asan}
[ -x "$build/stormguard" ] || { scripts/setup.sh; cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DSG_SANITIZE=ON >/dev/null; cmake --build "$build" -j"$(nproc)"; }
export SG_BIN=$PWD/$build/stormguard SG_TESTS=$PWD/tests
export SG_FUZZ_COUNT=${1:-100000} SG_FUZZ_SEED=${2:-$RANDOM}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
exec bash tests/e2e/test_gate_fuzz_http.sh
