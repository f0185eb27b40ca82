#!/usr/bin/env bash
# The gate's store backends side by side in one run, same nginx sink, same
# wrk load of distinct Igor build events (igor_post.lua), storm detector off
# (tests/bench/lib.sh gate_start says why), each on a store of its own:
#   (a) one gate on SQLite (synchronous = normal);
#   (b) one gate on PostgreSQL 15;
#   (c) two gates on one PostgreSQL database: replicas. Two wrk, one per
#       replica, each with half the connections and one thread (the same two
#       wrk threads as (a) and (b) have), each posting builds of its own of
#       the same 500 jobs (SG_PART): req/s summed, p50 and p99 the worse.
# The configurations take turns, ROUNDS times (default 3), each round on
# fresh stores, and every figure printed is the median of the rounds': on a
# shared host a neighbour's load falls on one run or another, and a single
# run of each swung the ratios by 2x here.
# Prints accepted req/s (2xx answers, wrk_parse) and forwarded/s (deliveries may fall behind the answers) and p99 at full
# load, the ratios b/a (target >= 0.5x) and c/b (target > 1); a round
# with failed replies is named; p99 at ~1,000 req/s (as bench_gate.sh: 10
# connections each waiting 10 ms between requests, so the rate stays below
# 1,000 by the reply time; wrk2 is not in Debian); what each full-load run
# left for the forwarder, and where the CPU went: the gates, PostgreSQL,
# wrk and nginx share this machine's cores (and whatever else runs on it
# shows as "rest"); last, the RSS of both replicas of (c) sampled every 5 s
# over RSS_SECONDS (60) of full load.
#
# PostgreSQL runs on this machine, started for the run by tests/lib.sh
# (fsync on, synchronous_commit on: an event is answered once its commit is
# durable; SQLite's normal does not wait for the disk at each commit).
#
# usage: tests/bench/bench_gate_pg.sh [SECONDS] [CONNECTIONS]
#   (defaults 20 and 32; RATE_SECONDS, default 20, for the ~1,000 req/s runs;
#   RSS_SECONDS, default 60; ROUNDS, default 3; DRAIN_SECONDS, default 120: the longest wait
#   for a full load's pending deliveries before the ~1,000 req/s run;
#   ONLY, default "abc": the configurations to run, "b" say, for a quick
#   look at one of them; ratios and RSS need theirs; STATEMENTS=1: also the
#   statements PostgreSQL spent the most time in during each full load, from
#   pg_stat_statements, which contrib of the postgresql package has)
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${1:-20}
CONNS=${2:-32}
RATE_SECONDS=${RATE_SECONDS:-20}
RSS_SECONDS=${RSS_SECONDS:-60}
DRAIN_SECONDS=${DRAIN_SECONDS:-120}
ROUNDS=${ROUNDS:-3}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a positive whole number, not '$ROUNDS'" >&2; exit 2; }
ONLY=${ONLY:-abc}
runs() { [[ $ONLY == *$1* ]]; }
source tests/bench/lib.sh
bench_build
lua=$PWD/tests/bench/igor_post.lua

# tests/lib.sh starts PostgreSQL (initdb, a free port, stopped on exit)
SG_BIN=$sg SG_TESTS=$PWD/tests source tests/lib.sh
set +E
trap - ERR
source scripts/redis-helpers.sh
source tests/bench/nginx.sh
work=$TMP
bench_cleanup() {
  local rc=$?
  bench_stop_all
  sg_stop_nginx "$work"
  (exit $rc)
  _sg_cleanup
}
trap bench_cleanup EXIT

STATEMENTS=${STATEMENTS:-}
if [[ -n $STATEMENTS ]]; then
  start_postgres -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all \
    -c pg_stat_statements.track_planning=on
else
  start_postgres
fi
pg_base=postgresql://stormguard@127.0.0.1:$PG_PORT
sink_port=$(sg_free_port)
sg_start_nginx "$work" "
  server {
    listen 127.0.0.1:$sink_port;
    location / { return 200 'ok'; }
  }"
cores=$(nproc)
hz=$(getconf CLK_TCK)

# store_q SQL: one query on the store of the configuration being measured
store_q() {
  if [[ $backend == sqlite ]]; then sqlite3 "$work/sg.db" "$1"; else psql_q "$1"; fi
}
# pg_counters: "commits wal-syncs wal-bytes" of the current database and the server
pg_counters() {
  psql_q "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),
                 (SELECT wal_sync FROM pg_stat_wal), (SELECT wal_bytes FROM pg_stat_wal)" | tr '|' ' '
}

# statements: the ten statements of the current database with the most
# execution and planning time since the last reset (STATEMENTS=1)
statements() {
  psql_q "SELECT lpad(round(total_exec_time + total_plan_time)::text, 7) || ' ms ' ||
                 lpad(calls::text, 8) || ' calls ' ||
                 lpad(round((total_exec_time / calls * 1000)::numeric, 1)::text, 7) ||
                 ' us exec ' || lpad(round((total_plan_time / calls * 1000)::numeric, 1)::text, 6) ||
                 ' us plan  ' || left(regexp_replace(query, '\s+', ' ', 'g'), 80)
          FROM pg_stat_statements
          WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
          ORDER BY total_exec_time + total_plan_time DESC LIMIT 10"
}

# measure KEY PORT...: the full-load run and the ~1,000 req/s run of the
# gate(s) listening on PORT... (pids in $gates), on a fresh store; sets
# KEY_rps, KEY_fwd (events forwarded per second of the full load), KEY_err,
# KEY_p50, KEY_p99, KEY_rrps, KEY_rp50, KEY_rp99, and KEY_cpu, KEY_store
# (lines for the report). Between the two runs it waits (<= DRAIN_SECONDS)
# for the deliveries the full load left pending.
measure() {
  local key=$1
  shift
  local rps err p50 p99 total t0 t1 m0 m1 g0 g1 pg0 pg1 n0 n1 c0=0 c1=0 s0=0 s1=0 b0=0 b1=0
  [[ $backend == sqlite ]] || read -r c0 s0 b0 < <(pg_counters)
  t0=$(date +%s.%N) m0=$(machine_ticks) g0=$(proc_ticks $gates)
  pg0=$(proc_ticks "$PG_PID") n0=$(proc_ticks "$(cat "$work/nginx.pid")")
  [[ -z $STATEMENTS ]] || psql_q "SELECT pg_stat_statements_reset()" >/dev/null
  read -r rps err p50 p99 total < <(SG_RUN=1 wrk_spread "$key" "$DURATION" "$CONNS" "$@")
  [[ -z $STATEMENTS ]] || statements >"$work/statements-$key"
  t1=$(date +%s.%N) m1=$(machine_ticks) g1=$(proc_ticks $gates)
  pg1=$(proc_ticks "$PG_PID") n1=$(proc_ticks "$(cat "$work/nginx.pid")")
  [[ $backend == sqlite ]] || read -r c1 s1 b1 < <(pg_counters)
  local wall wrk_s
  wall=$(awk "BEGIN {print $t1 - $t0}") wrk_s=$(wrk_cpu "$key")
  printf -v "${key}_rps" %s "$rps"
  printf -v "${key}_err" %s "$err"
  printf -v "${key}_p50" %s "$p50"
  printf -v "${key}_p99" %s "$p99"
  # cores busy: ticks / hz / wall; the rest is the machine's busy time
  # that none of ours took (this script's own curl and awk are in it)
  printf -v "${key}_cpu" '%s' "$(awk -v hz="$hz" -v w="$wall" -v g=$((g1 - g0)) \
    -v pg=$((pg1 - pg0)) -v n=$((n1 - n0)) -v wrk="$wrk_s" -v cores="$cores" \
    -v m0="$m0" -v m1="$m1" 'BEGIN {
      split(m0, a, " "); split(m1, b, " ")
      busy = (b[1] - a[1]) / (b[2] - a[2]) * cores
      g /= hz * w; pg /= hz * w; n /= hz * w; wrk /= w
      rest = busy - g - pg - wrk - n
      printf "gate %.2f, postgres %.2f, wrk %.2f, nginx %.2f, rest %.2f: busy %.2f of %d cores%s",
        g, pg, wrk, n, rest, busy, cores,
        (rest > 0.25 ? " (disturbed: other processes took a share)" : "") }')"
  # what the forwarder had done and left when the load stopped, and how
  # long it took to deliver the rest
  local q="SELECT count(*), sum(CASE WHEN state = 'pending' THEN 1 ELSE 0 END),
                  sum(CASE WHEN state = 'forwarded' THEN 1 ELSE 0 END),
                  sum(CASE WHEN kind = 'replay' THEN 1 ELSE 0 END) FROM event"
  local n pending fwd replays left drained d0 deadline
  IFS='|' read -r n pending fwd replays < <(store_q "$q")
  printf -v "${key}_fwd" %.2f "$(awk "BEGIN {print $fwd / $wall}")"
  d0=$(date +%s.%N) deadline=$(($(date +%s) + DRAIN_SECONDS))
  while (($(date +%s) < deadline)); do
    left=$(store_q "SELECT count(*) FROM event WHERE state = 'pending'")
    if ((left == 0)); then
      drained="all forwarded $(awk "BEGIN {printf \"%.1f\", $(date +%s.%N) - $d0}") s later"
      break
    fi
    sleep 0.2
  done
  : "${drained:=$left still pending $DRAIN_SECONDS s later, when the ~1,000 req/s run began}"
  local line
  line="$n events journaled ($total replies counted by wrk), $replays replays; $pending pending when the load stopped, $drained"
  if [[ $backend != sqlite ]]; then
    line+=$(awk -v c=$((c1 - c0)) -v s=$((s1 - s0)) -v b=$((b1 - b0)) -v w="$wall" -v e="$total" \
      'BEGIN {printf "; %.0f commits/s, %.0f WAL fsyncs/s, %.1f requests per commit, %.1f KiB of WAL per request", c / w, s / w, (c ? e / c : 0), (e ? b / e / 1024 : 0)}')
  fi
  printf -v "${key}_store" %s "$line"
  read -r rps err p50 p99 total < <(SG_RUN=2 SG_DELAY_MS=10 wrk_spread "$key-rate" "$RATE_SECONDS" 10 "$@")
  printf -v "${key}_rrps" %s "$rps"
  printf -v "${key}_rp50" %s "$p50"
  printf -v "${key}_rp99" %s "$p99"
}

echo "full load: wrk -c$CONNS -d${DURATION}s (two threads in all), distinct Igor build events;" \
  "~1,000 req/s: 10 connections, each waiting 10 ms between requests, ${RATE_SECONDS}s"

a_label="(a) SQLite (normal), one gate"
b_label="(b) PostgreSQL 15, one replica"
c_label="(c) PostgreSQL 15, two replicas"
FIELDS="rps fwd err p50 p99 rrps rp50 rp99"
# keep KEY ROUND: this round's figures of KEY join KEY_all_FIELD (latencies
# in ms), its CPU line KEY_cpus and its store's KEY_stores
keep() {
  local f n all
  for f in $FIELDS; do
    n=${1}_$f all=${1}_all_$f
    case $f in p50 | p99 | rp50 | rp99) printf -v "$all" '%s %s' "${!all:-}" "$(latency_ms "${!n}")" ;;
    *) printf -v "$all" '%s %s' "${!all:-}" "${!n}" ;;
    esac
  done
  n=${1}_cpu all=${1}_cpus
  printf -v "$all" '%s\n  (%s) round %s: %s' "${!all:-}" "$1" "$2" "${!n}"
  n=${1}_err all=${1}_failed
  # the rounds with non-2xx replies, socket errors or timeouts, named
  # under the table: their accepted/s counts the 2xx only
  ((${!n} == 0)) || printf -v "$all" '%s round %s: %s failed;' "${!all:-}" "$2" "${!n}"
  n=${1}_store all=${1}_stores
  printf -v "$all" '%s\n  (%s) round %s: %s' "${!all:-}" "$1" "$2" "${!n}"
}

run_a() {
  echo "$a_label, round $1 ..."
  backend=sqlite
  rm -f "$work"/sg.db*
  gate_start sqlite "$sink_port" --db "$work/sg.db"
  gates=$gate
  measure a "$gate_port"
  gate_stop $gates
  keep a "$1"
}

run_b() {
  echo "$b_label, round $1 ..."
  backend=pg
  PG_URL=$pg_base/stormguard psql_q "CREATE DATABASE one$1"
  PG_URL=$pg_base/one$1
  [[ -z $STATEMENTS ]] || psql_q "CREATE EXTENSION pg_stat_statements"
  gate_start pg "$sink_port" --store "$PG_URL"
  gates=$gate
  measure b "$gate_port"
  gate_stop $gates
  keep b "$1"
  # its autovacuum and checkpoints must not run in the next runs
  PG_URL=$pg_base/stormguard psql_q "DROP DATABASE one$1 WITH (FORCE)" >/dev/null
}

# the last round's two replicas stay up for the RSS run
run_c() {
  echo "$c_label, round $1 ..."
  backend=pg
  PG_URL=$pg_base/stormguard psql_q "CREATE DATABASE two$1"
  PG_URL=$pg_base/two$1
  [[ -z $STATEMENTS ]] || psql_q "CREATE EXTENSION pg_stat_statements"
  gate_start pg1 "$sink_port" --store "$PG_URL"
  r1=$gate r1_port=$gate_port
  gate_start pg2 "$sink_port" --store "$PG_URL"
  r2=$gate r2_port=$gate_port
  gates="$r1 $r2"
  measure c "$r1_port" "$r2_port"
  read -r r1_rps r1_err _ r1_p99 _ < <(wrk_parse "$work/wrk-c.0.txt")
  read -r r2_rps r2_err _ r2_p99 _ < <(wrk_parse "$work/wrk-c.1.txt")
  keep c "$1"
  if (($1 < ROUNDS)); then
    gate_stop $gates
    PG_URL=$pg_base/stormguard psql_q "DROP DATABASE two$1 WITH (FORCE)" >/dev/null
  fi
}

# the configurations take turns, round after round: what else runs on the
# machine (a neighbour's load on a shared host) falls on every one of them
for ((round = 1; round <= ROUNDS; round++)); do
  for k in a b c; do
    if runs $k; then run_$k "$round"; fi
  done
done

# every figure of the table: the median of the rounds'
for k in a b c; do
  runs $k || continue
  for f in $FIELDS; do
    n=${k}_all_$f
    # shellcheck disable=SC2086 # the rounds' figures, one word each
    v=$(printf %.2f "$(median ${!n})")
    case $f in p50 | p99 | rp50 | rp99) v=${v}ms ;; err) v=${v%.*} ;; esac
    printf -v "${k}_$f" %s "$v"
  done
done

row() { printf '%-33s %10s %11s %7s %8s %8s  %8s %8s %8s\n' "$@"; }
echo
# span TEXT WIDTH: TEXT centred in dashes
span() { awk -v t=" $1 " -v w="$2" 'BEGIN {l = int((w - length(t)) / 2); r = w - length(t) - l
  while (l-- > 0) printf "-"; printf "%s", t; while (r-- > 0) printf "-"}'; }
printf '%-33s %s  %s\n' "" "$(span "full load" 48)" "$(span "~1,000 req/s" 26)"
row "" "accepted/s" "forwarded/s" "failed" "p50" "p99" "req/s" "p50" "p99"
v() { local n=${k}_$1; echo "${!n}"; } # v FIELD: KEY_FIELD of the row $k
for k in a b c; do
  runs $k || continue
  row "$(v label)" "$(v rps)" "$(v fwd)" "$(v err)" "$(v p50)" "$(v p99)" "$(v rrps)" "$(v rp50)" "$(v rp99)"
done
ratio() { awk "BEGIN {printf \"%.2f\", $1 / $2}"; }
echo "(each figure the median of $ROUNDS rounds; failed: non-2xx replies, socket errors and timeouts,"
echo "wrk's 2 s, which p50 and p99 leave out)"
if ((ROUNDS > 1)); then
  echo "accepted/s at full load, round by round:"
  for k in a b c; do
    if runs $k; then n=${k}_all_rps && echo "  ($k)${!n}"; fi
  done
fi
for k in a b c; do
  n=${k}_failed
  if runs $k && [[ -n ${!n:-} ]]; then
    echo "  ($k) had failures (accepted/s counts the 2xx answers only):${!n%;}"
  fi
done
if runs a && runs b; then
  printf 'ratio b/a (one PostgreSQL replica / SQLite): %sx accepted (target >= 0.5x), %sx forwarded\n' \
    "$(ratio "$b_rps" "$a_rps")" "$(ratio "$b_fwd" "$a_fwd")"
fi
if runs b && runs c; then
  printf 'ratio c/b (two replicas / one): %sx accepted (target > 1), %sx forwarded\n' \
    "$(ratio "$c_rps" "$b_rps")" "$(ratio "$c_fwd" "$b_fwd")"
fi
echo
echo "the store after each full-load run:"
for k in a b c; do
  if runs $k; then n=${k}_stores && printf "%s\n" "${!n#$'\n'}"; fi
done
if runs c; then
  echo "      last round, replica 1: $r1_rps req/s, $r1_err failed, p99 $r1_p99; replica 2: $r2_rps req/s, $r2_err failed, p99 $r2_p99"
fi
if [[ -n $STATEMENTS ]]; then
  for k in b c; do
    runs $k || continue
    echo
    echo "($k): PostgreSQL's busiest statements during the last round's full load (pg_stat_statements):"
    sed 's/^/  /' "$work/statements-$k"
  done
fi
echo
echo "CPU at full load, in cores of this machine's $cores (rest: other processes on it, this script's"
echo "curl and awk, the kernel's own threads):"
for k in a b c; do
  if runs $k; then n=${k}_cpus && printf "%s\n" "${!n#$'\n'}"; fi
done
echo "  The gates, PostgreSQL (its backends, WAL writer, checkpointer), wrk and nginx share"
echo "  these $cores cores. Once they are busy, a second replica adds a process but no"
echo "  core: it can beat one replica only by working while the other waits for its"
echo "  commits, and the ratios measure this machine's CPU as much as the gate."
echo "  PostgreSQL's commits also wait for this disk's fsync (WAL fsyncs/s above)."

runs c || exit 0
echo
echo "RSS of the two replicas of (c) over ${RSS_SECONDS}s of full load (VmRSS, every 5 s):"
rss_samples "$RSS_SECONDS" "$r1" "$r2" >"$work/rss" &
sampler=$!
bench_pids+=("$sampler")
read -r l_rps l_err _ l_p99 l_total < <(SG_RUN=3 wrk_spread rss "$RSS_SECONDS" "$CONNS" "$r1_port" "$r2_port")
wait "$sampler"
bench_forget "$sampler"
i=0
while read -r -a s; do
  i=$((i + 1))
  echo "  replica $i, KiB: ${s[*]}"
  printf '    first %s KiB, last %s KiB, growth %s KiB (%+.1f%%)\n' "${s[0]}" "${s[-1]}" \
    "$((s[-1] - s[0]))" "$(awk "BEGIN {print (${s[-1]} - ${s[0]}) * 100 / ${s[0]}}")"
done <"$work/rss"
IFS='|' read -r l_n l_pending < <(psql_q "SELECT count(*),
  sum(CASE WHEN state = 'pending' THEN 1 ELSE 0 END) FROM event")
printf '  meanwhile %s req/s (%s failed, p99 %s), %s replies; %s events in PostgreSQL, %s pending\n' \
  "$l_rps" "$l_err" "$l_p99" "$l_total" "$l_n" "$l_pending"
gate_stop $gates
