#!/usr/bin/env bash
# The forwarder's HTTP client alone, side by side in one run against the same
# nginx sink: libcurl's multi interface on libuv (the client DESIGN.md named,
# which the forwarder used until it measured this) and h2o's HTTP/1.1 client
# (what it uses now). Same body, same connections in flight, same count.
# Prints requests per second and CPU time per request of the client process,
# and the ratio of h2o's CPU per request to curl's.
#
# usage: tests/bench/bench_forward.sh [REQUESTS] [IN_FLIGHT] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-200000}
C=${2:-32}
ROUNDS=${3:-3}
scripts/setup.sh --bench
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DSG_TESTS=ON >/dev/null
cmake --build build-bench -j"$(nproc)" --target bench_forward >/dev/null
bin=$PWD/build-bench/tests/bench_forward
[ -x "$bin" ] || bin=$(find build-bench -name bench_forward -type f -perm -u+x | head -1)

source scripts/redis-helpers.sh
source tests/bench/nginx.sh
work=$(mktemp -d)
cleanup() {
  sg_stop_nginx "$work"
  rm -rf "$work"
}
trap cleanup EXIT
sink_port=$(sg_free_port)
sg_start_nginx "$work" "
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$sink_port; location / { return 200 'ok'; } }"
sleep 0.3

echo "$N POSTs, $C in flight, to nginx answering 200; $ROUNDS rounds, alternating"
printf '%-6s %8s %12s %14s\n' client round "requests/s" "CPU us/request"
declare -A cpu_sum=()
for r in $(seq 1 "$ROUNDS"); do
  for client in curl h2o; do
    read -r name n rps us < <("$bin" "$client" 127.0.0.1 "$sink_port" "$N" "$C")
    printf '%-6s %8s %12s %14s\n' "$name" "$r" "$rps" "$us"
    cpu_sum[$client]=$(awk -v a="${cpu_sum[$client]:-0}" -v b="$us" 'BEGIN {print a + b}')
  done
done
printf 'CPU per request, mean: curl %.1f us, h2o %.1f us; h2o / curl = %.2fx\n' \
  "$(awk -v s="${cpu_sum[curl]}" -v n="$ROUNDS" 'BEGIN {print s / n}')" \
  "$(awk -v s="${cpu_sum[h2o]}" -v n="$ROUNDS" 'BEGIN {print s / n}')" \
  "$(awk -v a="${cpu_sum[h2o]}" -v b="${cpu_sum[curl]}" 'BEGIN {print a / b}')"
