#!/usr/bin/env bash
# The stormguard demo: a private redis-server holding a Spinnaker Igor cache
# (Jenkins cursors and posted markers, Travis build numbers, Docker digests)
# next to other applications' keys. stormguard inspects it, snapshots the
# poller's state, refuses a runbook FLUSHDB that would log everyone out,
# flushes only what was asked (after a snapshot), and restores it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSG_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
sg=$PWD/build/stormguard

source scripts/redis-helpers.sh
work=$(mktemp -d)
trap 'sg_stop_redis; rm -rf "$work"' EXIT
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
announce = no    ; no gate (stormguard run) runs in this demo to announce a flush to
INI

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$'; printf ' %q' "${@/#$PWD\/build\//}"; printf '\n'; "$@"; }

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
