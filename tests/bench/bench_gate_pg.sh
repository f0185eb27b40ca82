#!/usr/bin/env bash
# The gate with its store on PostgreSQL against the same gate on SQLite,
# side by side in one run: same nginx sink, same wrk load, distinct Igor
# build events (igor_post.lua), storm detector off (as bench_gate.sh says
# why). PostgreSQL 15 runs on this machine, started for the run (fsync on,
# synchronous_commit on: an event is answered once its commit is durable),
# so the gate, its store's server, wrk and nginx share its cores. Prints
#   (a) SQLite (synchronous = normal) and (b) PostgreSQL: accepted req/s and
#       p99 at full load, and the ratio b/a (target >= 0.5x);
#   p99 of each at ~1,000 req/s;
#   the PostgreSQL gate's RSS sampled over a 60 s run at full load.
#
# usage: tests/bench/bench_gate_pg.sh [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${1:-20}
CONNS=${2:-32}
RSS_SECONDS=${RSS_SECONDS:-60}
source tests/bench/lib.sh
bench_build
lua=$PWD/tests/bench/igor_post.lua

# tests/lib.sh starts PostgreSQL (initdb, a free port, stopped on exit)
SG_BIN=$sg SG_TESTS=$PWD/tests source tests/lib.sh
set +E
trap - ERR
source tests/bench/nginx.sh
work=$TMP
bench_cleanup() {
  sg_stop_nginx "$work"
  _sg_cleanup
}
trap bench_cleanup EXIT

start_postgres
sink_port=$(_sg_free_port)
sg_start_nginx "$work" "
  server {
    listen 127.0.0.1:$sink_port;
    location / { return 200 'ok'; }
  }"

# start NAME STORE-FLAGS...: a gate in front of the sink; sets gate_port,
# admin_port, gate (its pid)
start() {
  local name=$1
  shift
  gate_port=$(_sg_free_port) admin_port=$(_sg_free_port)
  "$sg" run "$@" --downstream "http://127.0.0.1:$sink_port" \
    --listen "127.0.0.1:$gate_port" --admin "127.0.0.1:$admin_port" --watch off \
    --storm-same-job 0 --storm-first-seen 0 --storm-first-seen-tags 0 --storm-replay-share 0 \
    --storm-rate-factor 0 2>"$work/gate-$name.log" &
  gate=$!
  bg_track "$gate"
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$admin_port/healthz" >/dev/null && return 0
    sleep 0.1
  done
  cat "$work/gate-$name.log" >&2
  exit 1
}
stop() {
  kill "$gate"
  wait "$gate" 2>/dev/null || true
}

echo "throughput: wrk -t2 -c$CONNS -d${DURATION}s, distinct Igor build events"
start sqlite --db "$work/sg.db"
read -r a_rps a_err a_p50 a_p99 _ < <(SG_RUN=1 wrk_run sqlite "$gate_port" "$DURATION" "$CONNS")
read -r ar_rps _ ar_p50 ar_p99 _ < <(SG_RUN=2 SG_DELAY_MS=10 wrk_run sqlite-rate "$gate_port" 20 10)
stop
start pg --store "$PG_URL"
read -r b_rps b_err b_p50 b_p99 _ < <(SG_RUN=1 wrk_run pg "$gate_port" "$DURATION" "$CONNS")
read -r br_rps _ br_p50 br_p99 _ < <(SG_RUN=2 SG_DELAY_MS=10 wrk_run pg-rate "$gate_port" 20 10)
journaled=$(psql_q "SELECT count(*) FROM event")

printf '\n%-40s %12s %9s %9s %9s\n' "" "accepted/s" "non-2xx" "p50" "p99"
printf '%-40s %12s %9s %9s %9s\n' "(a) stormguard, SQLite (normal)" "$a_rps" "$a_err" "$a_p50" "$a_p99"
printf '%-40s %12s %9s %9s %9s\n' "(b) stormguard, PostgreSQL 15 (local)" "$b_rps" "$b_err" "$b_p50" "$b_p99"
printf 'ratio PostgreSQL / SQLite: %.2fx (target >= 0.5x); %s events in PostgreSQL\n' \
  "$(awk "BEGIN{print $b_rps / $a_rps}")" "$journaled"
echo
echo "latency at ~1,000 req/s: 10 connections, each waiting 10 ms between requests, 20 s"
printf '  SQLite:     %s req/s, p50 %s, p99 %s\n' "$ar_rps" "$ar_p50" "$ar_p99"
printf '  PostgreSQL: %s req/s, p50 %s, p99 %s\n' "$br_rps" "$br_p50" "$br_p99"

echo
echo "RSS of the PostgreSQL gate over ${RSS_SECONDS}s of full load (VmRSS, every 5 s):"
SG_RUN=3 wrk -t2 -c"$CONNS" -d"${RSS_SECONDS}"s -s "$lua" "http://127.0.0.1:$gate_port/" \
  >/dev/null 2>&1 &
load=$!
bg_track "$load"
samples=()
for _ in $(seq 0 5 "$RSS_SECONDS"); do
  samples+=("$(awk '/VmRSS/ {print $2}' "/proc/$gate/status")")
  sleep 5
done
wait "$load" || true
echo "  KiB: ${samples[*]}"
printf '  first %s KiB, last %s KiB, growth %s KiB; %s events in PostgreSQL\n' \
  "${samples[0]}" "${samples[-1]}" "$((samples[-1] - samples[0]))" \
  "$(psql_q "SELECT count(*) FROM event")"
stop
