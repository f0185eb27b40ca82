#!/usr/bin/env bash
# Sets up, builds stormguard with AddressSanitizer + UndefinedBehaviorSanitizer
# and runs every test (unit, integration against a real redis-server,
# end-to-end of the built binary); then, where clang is, each fuzz target for
# SG_FUZZ_SECONDS (default 30; 0 skips them) from its corpus (tests/fuzz/run.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
build=${BUILD_DIR:-build-asan}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DSG_SANITIZE=ON >/dev/null
cmake --build "$build" -j"$(nproc)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
(cd "$build" && ctest --output-on-failure -j"$(nproc)" "$@")
if command -v clang >/dev/null && [[ ${SG_FUZZ_SECONDS:-30} != 0 ]]; then
  tests/fuzz/run.sh all "${SG_FUZZ_SECONDS:-30}"
fi
