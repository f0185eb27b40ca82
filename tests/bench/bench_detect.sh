#!/usr/bin/env bash
# Wipe detection latency: how long `stormguard run` (Release) takes from a
# FLUSHALL to guard mode, over N flushes. Target: under 10 ms.
#
# What is measured. A private redis-server (7.x) on a free 127.0.0.1 port is
# seeded with SG_JOBS Igor Jenkins jobs (default 1000: 2000 keys) and
# snapshotted with `stormguard snapshot --profile igor`, so the daemon starts
# with a baseline. The daemon runs with --profile igor, storm signals off,
# --log-format json --log-file, an admin bearer token. The driver
# (tests/bench/bench_detect.c) then, per round: re-seeds the jobs, turns guard
# mode off (DELETE /v1/guard), waits until /v1/status shows the daemon
# re-armed (mode normal, redis link up, "armed": the canary the watcher
# re-creates after a wipe is back, "tracking" as expected, the wipe count one
# per flush so far), sleeps a random 0..jitter ms, takes the client time t0
# and sends FLUSHALL with hiredis without waiting for the reply. It then
# blocks in poll() on inotify of the daemon's log file and on the Redis
# socket. The daemon writes its "guard mode on" line (flushed) in the very
# callback that turns guard mode on, so:
#
#   seen    t0 -> the driver read the "guard mode on" line: the figure; an
#           upper bound of the true latency (it adds one write and one wakeup)
#   logged  t0 -> the line's own timestamp + 1 ms: the daemon's clock
#           truncates to the ms, so this is a second upper bound, taken by
#           the daemon itself (no write, no wakeup), coarse by up to 1 ms
#   reply   t0 -> the FLUSHALL reply reached the client (Redis's flush and one
#           round trip: what any watcher starts from)
#
# Rows: (1) client tracking (the invalidation Redis sends on FLUSHALL), N
# rounds, jitter SG_JITTER_MS (default 20) to keep rounds from lining up with
# the daemon's periodic check; (2) the fallback without tracking: the daemon
# connects as an ACL user that may not run CLIENT TRACKING (`-client|tracking`,
# as a managed Redis may forbid it), so only the periodic check every
# SG_CHECK_MS (default 1000, the daemon's default) can see the flush; here the
# jitter is the whole check period so a flush lands at a uniformly random
# point of it, over SG_FALLBACK_ROUNDS rounds (default 20; each waits about
# one period).
#
# usage: tests/bench/bench_detect.sh [N]   (default 100)
#   SG_BUILD  build directory (default build-bench), configured Release
#   SG_JOBS SG_JITTER_MS SG_CHECK_MS SG_FALLBACK_ROUNDS (0 skips row 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-100}
JOBS=${SG_JOBS:-1000}
JITTER=${SG_JITTER_MS:-20}
CHECK_MS=${SG_CHECK_MS:-1000}
FALLBACK_ROUNDS=${SG_FALLBACK_ROUNDS:-20}
BUILD=${SG_BUILD:-build-bench}
scripts/setup.sh
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSG_TESTS=ON >/dev/null
cmake --build "$BUILD" -j2 --target stormguard bench_detect >/dev/null
BUILD=$(cd "$BUILD" && pwd)
sg=$BUILD/stormguard
driver=$BUILD/tests/bench_detect

source scripts/redis-helpers.sh
work=$(mktemp -d)
gate=
stop_gate() {
  [[ -n $gate ]] || return 0
  kill "$gate" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$gate" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$gate" 2>/dev/null || true
  wait "$gate" 2>/dev/null || true
  gate=
}
cleanup() {
  stop_gate
  sg_stop_redis
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

sg_start_redis "$work"
port=$SG_REDIS_PORT
rcli() { redis-cli -p "$port" "$@"; }
# the fallback's user: everything but CLIENT TRACKING
acl_pass=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
rcli ACL SETUSER sgbench on ">$acl_pass" '~*' '&*' +@all '-client|tracking' >/dev/null

"$driver" seed --redis-port "$port" --jobs "$JOBS"
"$sg" snapshot --profile igor --redis "redis://127.0.0.1:$port" --db "$work/sg.db" >/dev/null

token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
printf '%s\n' "$token" >"$work/token"
chmod 600 "$work/token"

# start_gate NAME URL: the daemon on free ports, log in $work/NAME.log; sets
# gate (pid) and admin (ADDR:PORT) once /healthz answers.
start_gate() {
  local name=$1 url=$2
  for _ in 1 2 3 4 5; do
    local lp ap
    lp=$(sg_free_port) ap=$(sg_free_port)
    [[ $lp != "$ap" ]] || continue
    rm -f "$work/$name.log"
    "$sg" run --redis "$url" --profile igor --db "$work/sg.db" \
      --listen "127.0.0.1:$lp" --admin "127.0.0.1:$ap" \
      --downstream "http://127.0.0.1:$(sg_free_port)" --admin-token-file "$work/token" \
      --check-interval-ms "$CHECK_MS" --guard-duration 1h \
      --storm-same-job 0 --storm-first-seen 0 --storm-replay-share 0 --storm-rate-factor 0 \
      --log-format json --log-file "$work/$name.log" </dev/null >/dev/null 2>"$work/$name.err" &
    gate=$!
    admin=127.0.0.1:$ap
    for _ in $(seq 1 100); do
      if curl -sf -o /dev/null --max-time 1 "http://$admin/healthz"; then return 0; fi
      kill -0 "$gate" 2>/dev/null || break
      sleep 0.05
    done
    stop_gate
    grep -qi "in use" "$work/$name.err" "$work/$name.log" 2>/dev/null && continue
    cat "$work/$name.err" "$work/$name.log" >&2 2>/dev/null || true
    echo "stormguard run did not start" >&2
    exit 1
  done
  echo "no free ports for stormguard run" >&2
  exit 1
}

# measure NAME URL ROUNDS JITTER [--no-tracking]: the driver's summary lines.
measure() {
  local name=$1 url=$2 rounds=$3 jitter=$4
  shift 4
  # the keys of the baseline are there when it starts (the last round flushed)
  "$driver" seed --redis-port "$port" --jobs "$JOBS"
  start_gate "$name" "$url"
  if ! SG_ADMIN_TOKEN=$token "$driver" run --redis-port "$port" --admin "$admin" \
    --log "$work/$name.log" --rounds "$rounds" --jobs "$JOBS" --jitter-ms "$jitter" \
    --samples "$work/$name.samples" "$@" >"$work/$name.out"; then
    echo "--- last lines of the daemon's log:" >&2
    tail -n 20 "$work/$name.log" >&2 || true
    exit 1
  fi
  stop_gate
}

# field NAME KEY FILE: a value of the driver's summary
field() { awk -v n="$1" -v k="$2" '$1 == n { for (i = 2; i <= NF; i++) {
  split($i, kv, "="); if (kv[1] == k) print kv[2] } }' "$3"; }

echo "tracking: $ROUNDS flushes of $((2 * JOBS)) keys..."
measure tracking "redis://127.0.0.1:$port" "$ROUNDS" "$JITTER"
if ((FALLBACK_ROUNDS > 0)); then
  echo "fallback (no CLIENT TRACKING, check every $CHECK_MS ms): $FALLBACK_ROUNDS flushes..."
  STORMGUARD_REDIS_PASSWORD=$acl_pass measure fallback "redis://sgbench@127.0.0.1:$port" \
    "$FALLBACK_ROUNDS" "$CHECK_MS" --no-tracking
  grep -q "no client tracking" "$work/fallback.log" ||
    { echo "the fallback daemon did not report running without tracking" >&2; exit 1; }
fi

row() { # LABEL NAME MEASURE
  printf '%-46s %6s %8s %8s %8s %8s\n' "$1" "$(field "$3" n "$work/$2.out")" \
    "$(field "$3" median "$work/$2.out")" "$(field "$3" p90 "$work/$2.out")" \
    "$(field "$3" p99 "$work/$2.out")" "$(field "$3" max "$work/$2.out")"
}
printf '\nFLUSHALL -> guard mode, ms (nearest-rank percentiles)\n'
printf '%-46s %6s %8s %8s %8s %8s\n' path rounds median p90 p99 max
row "(1) client tracking: seen by the client" tracking seen
row "    the daemon's log ts + 1 ms (upper bound)" tracking logged
row "    FLUSHALL reply at the client (reference)" tracking reply
if ((FALLBACK_ROUNDS > 0)); then
  row "(2) no tracking, check every $CHECK_MS ms: seen" fallback seen
  row "    FLUSHALL reply at the client (reference)" fallback reply
fi
median=$(field seen median "$work/tracking.out")
printf 'ratio median (1) / 10 ms target: %.3fx (%s)\n' "$(awk "BEGIN{print $median / 10}")" \
  "$(awk "BEGIN{print ($median < 10) ? \"met\" : \"missed\"}")"
if ((FALLBACK_ROUNDS > 0)); then
  echo "(2) is bounded by the check period: a flush waits for the next check, on average half of it"
fi
