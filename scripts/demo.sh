#!/usr/bin/env bash
# The stormguard demo: a private redis-server holding a Spinnaker Igor cache
# (Jenkins cursors and posted markers, Travis build numbers, Docker digests)
# next to other applications' keys. stormguard inspects it, snapshots the
# poller's state, refuses a runbook FLUSHDB that would log everyone out,
# flushes only what was asked (after a snapshot), and restores it. Then the
# daemon: stormguard run in front of a stand-in notifier notices a FLUSHALL
# within milliseconds, rewarms the poller's keys, and holds the builds it
# cannot tell from replays until an operator releases the newest of each job.
#
# The narration is plain text when stdout is not a terminal or NO_COLOR is set.
# A build folder left by a checkout elsewhere (build/CMakeCache.txt made for
# another source dir, as in a copy of this tree) is started afresh.
#
# Environment:
#   SG_DEMO_BIN=FILE  run this stormguard binary instead of building one; the
#                     build folder is still checked and configured (where a
#                     stale one would stop the demo), only not compiled. The
#                     end-to-end test (tests/e2e/test_demo.sh) uses it to stay
#                     quick.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
build=$PWD/build
if [[ -f $build/CMakeCache.txt ]]; then
  cached_src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt")
  cached_build=$(sed -n 's/^CMAKE_CACHEFILE_DIR:INTERNAL=//p' "$build/CMakeCache.txt")
  if [[ $(realpath -m -- "${cached_src:-/nonexistent}") != "$(pwd -P)" ||
    $(realpath -m -- "${cached_build:-/nonexistent}") != "$(realpath -m -- "$build")" ]]; then
    echo "demo: build/ was configured for ${cached_src:-another source dir}, not $PWD: removing it and building afresh"
    rm -rf "$build"
  fi
fi
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSG_TESTS=OFF >/dev/null
if [[ -n ${SG_DEMO_BIN:-} ]]; then
  sg=$SG_DEMO_BIN
else
  cmake --build "$build" -j"$(nproc)" >/dev/null
  sg=$build/stormguard
fi

source scripts/redis-helpers.sh
work=$(mktemp -d)
daemon_pids=()
# Also on an early exit (a failed step, ^C, a closed pipe), when no daemon
# runs yet: a failing `kill` with no pids would end the trap before the
# redis-server is stopped.
cleanup() {
  set +e
  if ((${#daemon_pids[@]})); then
    kill "${daemon_pids[@]}" 2>/dev/null
    wait "${daemon_pids[@]}" 2>/dev/null
  fi
  sg_stop_redis
  rm -rf "$work"
}
trap cleanup EXIT
sg_start_redis "$work"
url=redis://127.0.0.1:$SG_REDIS_PORT/0
export STORMGUARD_CONFIG=$work/stormguard.ini
cat >"$STORMGUARD_CONFIG" <<INI
[redis]
url = $url
[store]
path = $work/stormguard.db
[profile]
name = igor
[flush]
announce = no    ; the first half of this demo runs no gate to announce a flush to
INI

# Bold headings on a terminal only (https://no-color.org).
if [[ -t 1 && -z ${NO_COLOR:-} ]]; then
  bold=$'\033[1m' plain=$'\033[0m'
else
  bold= plain=
fi
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
# run CMD...: shows the command (the binary as plain "stormguard"), runs it.
run() {
  local shown=("$@")
  [[ $1 != "$sg" ]] || shown[0]=stormguard
  printf '$'
  printf ' %q' "${shown[@]}"
  printf '\n'
  "$@"
}

say "Seeding redis $url with an Igor cache: 120 Jenkins jobs, Travis, Docker, sessions, cache"
{
  now=$(date +%s000)
  for i in $(seq 1 120); do
    job="team-$((i % 7))/service-$i"
    JOB=${job^^}
    cursor=$((now - i * 60000))
    printf 'HSET igor:jenkins-prod:%s:%s lastPollCycleTimestamp %s\n' "$JOB" "$job" "$cursor"
    printf 'HSET igor:jenkins-prod:%s:%s:lastPollCycleTimestamp:%s %s POSTED %s POSTED %s POSTED\n' \
      "$JOB" "$job" "$cursor" $((i + 100)) $((i + 101)) $((i + 102))
  done
  for i in $(seq 1 20); do
    printf 'SET igor:builds:completed:travis-ci:ORG/LIB-%s:org/lib-%s %s\n' "$i" "$i" $((i * 3))
  done
  for i in $(seq 1 10); do
    printf 'HSET igor:dockerRegistry:v2:dockerhub:org/app-%s:v1.%s digest sha256:%064d\n' "$i" "$i" "$i"
  done
  for i in $(seq 1 40); do printf 'SET session:user-%s token-%s EX 3600\n' "$i" "$i"; done
  for i in $(seq 1 500); do printf 'SET cache:page-%s html-%s EX 600\n' "$i" "$i"; done
} | redis-cli -p "$SG_REDIS_PORT" >/dev/null

say "What is in this redis?"
run "$sg" inspect

say "Snapshot the poller's state (Igor profile: keys and decoded build index)"
run "$sg" snapshot --reason demo

say "A runbook says FLUSHDB. stormguard refuses: it would log 40 users out"
run "$sg" flush --flushdb || echo "(exit code $?: refused by a safety rule, nothing deleted)"

say "Flush only the poller's keys instead: plan first, then for real"
run "$sg" flush --match 'igor:*' --dry-run
run "$sg" flush --match 'igor:*'
printf 'igor keys left: %s\n' "$(redis-cli -p "$SG_REDIS_PORT" --scan --pattern 'igor:*' | wc -l)"

say "This is the moment a poller would re-announce every old build. Restore its state:"
run "$sg" restore latest
printf 'igor keys back: %s\n' "$(redis-cli -p "$SG_REDIS_PORT" --scan --pattern 'igor:*' | wc -l)"
printf 'cursor of team-1/service-1: %s\n' \
  "$(redis-cli -p "$SG_REDIS_PORT" hget 'igor:jenkins-prod:TEAM-1/SERVICE-1:team-1/service-1' lastPollCycleTimestamp)"

say "Restore never clobbers: a second restore skips every key that exists"
run "$sg" restore latest

say "The snapshots kept in the store"
run "$sg" snapshots

say "Now the daemon. A stand-in notifier (Echo) that logs what reaches it:"
# It writes to its own log, not to the terminal: its lines would land in the
# middle of the narration's. notifier_show prints them at the right moments.
notifier_log=$work/notifier.log
notifier_shown=0
: >"$notifier_log"
sink_port=$(sg_free_port)
python3 -u -c '
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        b = body["content"]["project"]
        print("  notifier <- %s #%s" % (b["name"], b["lastBuild"]["number"]), flush=True)
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
' "$sink_port" </dev/null >>"$notifier_log" 2>&1 &
daemon_pids+=($!)
# notifier_show TEXT: waits (at most 5 s) until the notifier has logged a line
# with TEXT, then prints its whole lines not shown yet.
notifier_show() {
  local n
  for _ in $(seq 1 50); do
    grep -qF -- "$1" "$notifier_log" && break
    sleep 0.1
  done
  n=$(wc -l <"$notifier_log")
  tail -n +"$((notifier_shown + 1))" "$notifier_log" | head -n "$((n - notifier_shown))"
  notifier_shown=$n
}
gate_port=$(sg_free_port)
admin_port=$(sg_free_port)
cat >>"$STORMGUARD_CONFIG" <<INI
[gate]
listen = 127.0.0.1:$gate_port
downstream = http://127.0.0.1:$sink_port
[admin]
listen = 127.0.0.1:$admin_port
[guard]
rewarm = yes
INI
printf '$ stormguard run --rewarm on   (log: %s)\n' "$work/run.log"
"$sg" run >"$work/run.log" 2>&1 &
daemon_pids+=($!)
for _ in $(seq 1 50); do
  curl -sf "http://127.0.0.1:$admin_port/healthz" >/dev/null && break
  sleep 0.1
done
sleep 0.5
run "$sg" status

say "Someone runs FLUSHALL by hand. stormguard notices it and puts the poller's keys back:"
printf '$ redis-cli FLUSHALL\n'
redis-cli -p "$SG_REDIS_PORT" flushall >/dev/null
sleep 1
grep -E "wiped|rewarmed|guard mode" "$work/run.log" | sed 's/^/  log: /'
printf 'igor keys: %s\n' "$(redis-cli -p "$SG_REDIS_PORT" --scan --pattern 'igor:*' | wc -l)"

say "Builds arriving now, as a poller that lost its memory would post them:"
event() { # job number timestamp
  printf '{"details":{"type":"build","source":"igor"},"content":{"master":"jenkins-prod","project":{"name":"%s","lastBuild":{"number":%s,"result":"SUCCESS","building":false,"timestamp":"%s","url":"https://jenkins/job/%s/%s/"}}}}' \
    "$1" "$2" "$3" "$1" "$2"
}
post() {
  printf '  post %-24s #%-4s -> ' "$1" "$2"
  curl -s -X POST -H 'Content-Type: application/json' --data-binary "$(event "$@")" \
    "http://127.0.0.1:$gate_port/"
  echo
}
cursor=$(redis-cli -p "$SG_REDIS_PORT" hget 'igor:jenkins-prod:TEAM-1/SERVICE-1:team-1/service-1' lastPollCycleTimestamp)
post team-1/service-1 101 "$((cursor - 3600000))"      # announced long ago: a replay
post team-1/service-1 900 "$((cursor + 60000))"        # genuinely new: forwarded at once
notifier_show 'team-1/service-1 #900'
for n in 41 42 43; do post team-9/created-later "$n" "$((cursor + n))"; done  # unknown job
sleep 0.5

say "Held until someone decides. The newest build of each job goes, the older ones are superseded:"
run "$sg" held
run "$sg" release --all --newest-only
notifier_show 'team-9/created-later #43'
say "The operator ends guard mode; jenkins-prod stays in storm mode for a while"
echo "(three builds of one job within a minute tripped the storm detector; it ends once"
echo "[storm] cooldown passes without another signal)"
run "$sg" guard off --reason "demo over"
run "$sg" status
