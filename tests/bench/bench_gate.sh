#!/usr/bin/env bash
# The gate's throughput and latency against the reference named in issue 3,
# side by side in one run, same sink, same wrk connections and duration:
#   (a) nginx proxy_pass with limit_req in front of the sink (what people use
#       today; the limit is set high so it shapes nothing and rejects nothing)
#   (b) stormguard run in front of the same sink, journaling every event in
#       SQLite (synchronous=NORMAL) before answering
# The sink is nginx answering 200. Every request is an Igor build event with
# a distinct build number (igor_post.lua). Then (c) the same gate with 30% of
# the requests Igor Docker events, against (b). Then, at a fixed ~1,000
# req/s, the p99 reply latency of stormguard, and its RSS sampled over a 60 s
# run.
#
# usage: tests/bench/bench_gate.sh [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${1:-20}
CONNS=${2:-32}
RSS_SECONDS=${RSS_SECONDS:-60}
source tests/bench/lib.sh
bench_build
lua=$PWD/tests/bench/igor_post.lua

source scripts/redis-helpers.sh
source tests/bench/nginx.sh
work=$(mktemp -d)
cleanup() {
  bench_stop_all
  sg_stop_nginx "$work"
  rm -rf "$work"
}
trap cleanup EXIT

sink_port=$(sg_free_port) proxy_port=$(sg_free_port)
sg_start_nginx "$work" "
  limit_req_zone \$binary_remote_addr zone=igor:10m rate=1000000r/s;
  upstream sink { server 127.0.0.1:$sink_port; keepalive 64; }
  server {
    listen 127.0.0.1:$sink_port;
    location / { return 200 'ok'; }
  }
  server {
    listen 127.0.0.1:$proxy_port;
    location / {
      limit_req zone=igor burst=100000 nodelay;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_pass http://sink;
    }
  }"

gate_start sqlite "$sink_port" --db "$work/sg.db"

echo "throughput: wrk -t2 -c$CONNS -d${DURATION}s, distinct Igor build events"
read -r n_rps n_err n_p50 n_p99 n_total < <(wrk_run nginx "$proxy_port" "$DURATION" "$CONNS")
read -r s_rps s_err s_p50 s_p99 s_total < <(SG_RUN=1 wrk_run gate "$gate_port" "$DURATION" "$CONNS")
journaled=$(metric_sum "$admin_port" stormguard_events_received_total)

printf '\n%-44s %12s %9s %9s %9s\n' "" "accepted/s" "failed" "p50" "p99"
printf '%-44s %12s %9s %9s %9s\n' "(a) nginx proxy_pass + limit_req -> sink" "$n_rps" "$n_err" "$n_p50" "$n_p99"
printf '%-44s %12s %9s %9s %9s\n' "(b) stormguard (journal, NORMAL) -> sink" "$s_rps" "$s_err" "$s_p50" "$s_p99"
printf 'ratio stormguard / nginx: %.2fx (target >= 0.5x); journaled %s of %s requests\n' \
  "$(awk "BEGIN{print $s_rps / $n_rps}")" "$journaled" "$s_total"

echo
echo "Docker events take the builds' path: the same run with 30% Igor Docker events (distinct tags)"
before=$(curl -s "http://127.0.0.1:$admin_port/metrics")
read -r d_rps d_err d_p50 d_p99 d_total < <(SG_RUN=2 SG_DOCKER_PCT=30 wrk_run docker "$gate_port" "$DURATION" "$CONNS")
after=$(curl -s "http://127.0.0.1:$admin_port/metrics")
# builds only again, after it: the store has grown since (b); the mix is
# judged against both
read -r b2_rps b2_err b2_p50 b2_p99 b2_total < <(SG_RUN=3 wrk_run gate2 "$gate_port" "$DURATION" "$CONNS")
printf '%-44s %12s %9s %9s %9s\n' "(b) builds only (above)" "$s_rps" "$s_err" "$s_p50" "$s_p99"
printf '%-44s %12s %9s %9s %9s\n' "(c) stormguard, 30% Docker events" "$d_rps" "$d_err" "$d_p50" "$d_p99"
printf '%-44s %12s %9s %9s %9s\n' "(b') builds only, after (c)" "$b2_rps" "$b2_err" "$b2_p50" "$b2_p99"
printf 'ratio Docker mix / builds only: %.2fx against (b), %.2fx against (b'"'"') (target: no drop beyond noise)\n' \
  "$(awk "BEGIN{print $d_rps / $s_rps}")" "$(awk "BEGIN{print $d_rps / $b2_rps}")"
# what the mix was, as the gate classified it
kinds() { awk '/^stormguard_events_received_total\{/ {split($1, a, "kind=\""); split(a[2], k, "\""); n[k[1]] += $2} END {for (x in n) printf "%s=%d ", x, n[x]}' <<<"$1"; }
echo "  events by kind before (c): $(kinds "$before")"
echo "  events by kind after (c):  $(kinds "$after")"

echo
echo "latency at ~1,000 req/s: 10 connections, each waiting 10 ms between requests, 20 s"
read -r r_rps r_err r_p50 r_p99 r_total < <(SG_RUN=4 SG_DELAY_MS=10 wrk_run rate "$gate_port" 20 10)
printf 'stormguard at %s req/s: p50 %s, p99 %s (target p99 < 5 ms)\n' "$r_rps" "$r_p50" "$r_p99"

echo
echo "RSS over ${RSS_SECONDS}s of full load (VmRSS of the gate, sampled every 5 s):"
SG_RUN=5 wrk -t2 -c"$CONNS" -d"${RSS_SECONDS}"s -s "$lua" "http://127.0.0.1:$gate_port/" >/dev/null 2>&1 &
load=$!
bench_pids+=("$load")
read -r -a samples < <(rss_samples "$RSS_SECONDS" "$gate")
wait "$load" || true
bench_forget "$load"
echo "  KiB: ${samples[*]}"
printf '  first %s KiB, last %s KiB, growth %s KiB over %s events journaled in total\n' \
  "${samples[0]}" "${samples[-1]}" "$((samples[-1] - samples[0]))" \
  "$(metric_sum "$admin_port" stormguard_events_received_total)"
