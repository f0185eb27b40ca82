#!/usr/bin/env bash
# Notice and hold, end to end against a real redis-server and the built
# binary: FLUSHALL, FLUSHDB, a restart without persistence and a delete of the
# poller's keys are each detected and turn guard mode on; with rewarm on, the
# profile's keys come back without overwriting what was written after the
# flush; during guard mode unknown builds are held, replays suppressed and new
# builds forwarded; held events survive kill -9; release --newest-only
# forwards one build per job and drop forwards nothing; an announced flush is
# not rewarmed.
source "$SG_TESTS/lib.sh"

start_redis
seed_igor 20
run sg snapshot --profile igor --json
assert_rc 0 "snapshot --profile igor of 20 jobs"
IGOR_KEYS=$(rcli --scan --pattern 'igor:*' | wc -l)

start_sink
start_gate --redis "redis://127.0.0.1:$PORT" --profile igor --rewarm on \
    --check-interval-ms 200 --guard-duration 1h --snapshot-interval 0

cursor() { echo $((1526030000000 + $1 * 1000)); }
mode() { json_get "$(gate_status)" "d['mode']"; }
link_up() { [ "$(json_get "$(gate_status)" "d['redis']['link']")" = up ]; }
# post BODY KIND STATE MSG
post() {
    gate_post / "$1"
    [ "$HTTP_STATUS" = 200 ] || fail "$4: HTTP $HTTP_STATUS: $REPLY"
    local got
    got=$(json_get "$REPLY" "d['kind'] + '/' + d['state']")
    assert_eq "$2/$3" "$got" "$4"
    LAST_ID=$(json_get "$REPLY" "d['id']")
}
ms() { echo $(($(date +%s%N) / 1000000)); }
op() { "$SG_BIN" "$1" --admin "$ADMIN" "${@:2}"; }

wait_for 10 "the watcher connects" link_up
assert_eq normal "$(mode)" "normal mode before any wipe"
assert_eq 1 "$(rcli exists stormguard:canary)" "the watcher created its canary"

echo "# FLUSHALL: guard mode, rewarm, nothing written after the flush is overwritten"
T0=$(ms)
# the cursor of service-1 is written again right after the flush (the poller
# already running its next cycle): the rewarm must leave it alone
printf 'FLUSHALL\r\nHSET igor:jenkins-prod:TEAM-A/SERVICE-1:team-a/service-1 lastPollCycleTimestamp 1999999999999\r\n' |
    redis-cli -p "$PORT" >/dev/null
wait_for 5 "guard mode after FLUSHALL" sh -c "[ \"\$(curl -sf http://$ADMIN/v1/status | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"mode\"])')\" = guard ]"
echo "# guard mode $(($(ms) - T0)) ms after FLUSHALL (bound 5 s)"
ST=$(gate_status)
assert_eq 1 "$(json_get "$ST" "d['wipes']")" "one wipe counted"
assert_contains "$(json_get "$ST" "d['guard']['reason']")" "flush" "the guard reason names the flush"
wait_for 5 "the rewarm brings the igor keys back" \
    sh -c "[ \$(redis-cli -p $PORT --scan --pattern 'igor:*' | wc -l) -ge $IGOR_KEYS ]"
assert_eq "$IGOR_KEYS" "$(rcli --scan --pattern 'igor:*' | wc -l)" "all $IGOR_KEYS igor keys are back"
assert_eq 1999999999999 "$(rcli hget igor:jenkins-prod:TEAM-A/SERVICE-1:team-a/service-1 lastPollCycleTimestamp)" \
    "the cursor written after the flush was not overwritten"
assert_eq 1 "$(rcli exists stormguard:canary)" "the canary is back"
wait_for 5 "the rewarm is counted" sh -c "[ \"\$(curl -sf http://$ADMIN/v1/status | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"rewarms\"])')\" = 1 ]"
assert_contains "$(cat "$GATE_LOG")" "rewarmed" "the log says what the rewarm did"

echo "# guard mode: unknown held, replays suppressed, new forwarded"
NFWD=$(sink_count)
post "$(igor_event team-a/service-1 102 $(($(cursor 1) + 60000)))" replay suppressed "a replay is suppressed"
post "$(igor_event team-a/service-2 500 $(($(cursor 2) + 60000)))" new pending "a new build of a known job is forwarded"
for n in 1 2 3; do
    post "$(igor_event team-z/stale $n 1526040000000)" unknown held "unknown job team-z/stale build $n is held"
done
post "$(igor_event team-y/other 7 1526040000000)" unknown held "unknown job team-y/other build 7 is held"
post "$(igor_event team-z/stale 2 1526040000000)" replay suppressed \
    "a second delivery of a held build is a replay (the store's ledger has it)"
sleep 0.5
assert_eq $((NFWD + 1)) "$(sink_count)" "only the new build reached the sink"
assert_eq 4 "$(json_get "$(gate_status)" "d['held']")" "4 events held"

echo "# held events survive kill -9"
kill_gate
restart_gate
wait_for 10 "the watcher reconnects" link_up
assert_eq 4 "$(json_get "$(gate_status)" "d['held']")" "still 4 held after kill -9 and restart"
post "$(igor_event team-z/stale 3 1526040000000)" replay suppressed \
    "after the restart a held build's second delivery is still a replay"

echo "# the held summary and release --newest-only"
run op held --json
assert_rc 0 "stormguard held --json"
assert_eq 4 "$(json_get "$OUT" "d['held']")" "held --json counts 4"
assert_eq 2 "$(json_get "$OUT" "d['jobs_total']")" "in 2 jobs"
run op held --json --limit 1
assert_eq "team-z/stale 4 2" "$(json_get "$OUT" "' '.join(str(x) for x in (d['jobs'][0]['job'], d['held'], d['jobs_total']))")" \
    "held --limit 1: the job with the most held events, and the totals over all"
assert_eq "3 1 3" "$(json_get "$OUT" "' '.join(str(j[k]) for j in d['jobs'] if j['job'] == 'team-z/stale' for k in ('count', 'oldest', 'newest'))")" \
    "team-z/stale: 3 held, builds 1 to 3"
run op release --job 'team-z/*' --newest-only
assert_rc 0 "release --job 'team-z/*' --newest-only"
assert_contains "$OUT" "released 1" "one released"
assert_contains "$OUT" "2 older builds superseded" "two superseded"
wait_for 5 "the released build reaches the sink" sh -c "[ \"\$(curl -sf http://$ADMIN/v1/status | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"pending\"])')\" = 0 ]"
sleep 0.3
assert_eq $((NFWD + 2)) "$(sink_count)" "exactly one more build reached the sink"
assert_eq 3 "$(sink_py 'print(json.loads(ok[-1]["body"])["content"]["project"]["lastBuild"]["number"])')" \
    "and it is the newest, build 3"

echo "# drop forwards nothing"
run op drop --all
assert_rc 2 "drop without --reason is a usage error"
run op drop --all --reason "stale after the wipe"
assert_rc 0 "drop --all --reason"
assert_contains "$OUT" "1" "one dropped"
sleep 0.5
assert_eq $((NFWD + 2)) "$(sink_count)" "the drop forwarded nothing"
assert_eq 0 "$(json_get "$(gate_status)" "d['held']")" "nothing held any more"
run sql "SELECT action || ':' || actor FROM audit WHERE action IN ('release', 'drop') ORDER BY id"
assert_contains "$OUT" "release:" "the release is audited"
assert_contains "$OUT" "drop:" "the drop is audited"

echo "# guard off / on by the operator, audited"
run op guard off --reason "storm over"
assert_rc 0 "guard off"
assert_eq normal "$(mode)" "normal mode"
post "$(igor_event team-x/fresh 1 1526040000000)" unknown pending "unknown builds are forwarded in normal mode"
post "$(igor_event team-z/stale 1 1526040000000)" replay suppressed "a superseded build stays suppressed in normal mode"
post "$(igor_event team-y/other 7 1526040000000)" replay suppressed "a dropped build stays suppressed in normal mode"
run op guard on --reason "maintenance"
assert_rc 0 "guard on"
assert_eq guard "$(mode)" "guard mode again"
run sql "SELECT count(*) FROM audit WHERE action IN ('guard on', 'guard off')"
assert_eq 2 "$OUT" "both guard changes are audited"
run op guard off

echo "# FLUSHDB"
W=$(json_get "$(gate_status)" "d['wipes']")
rcli flushdb >/dev/null
wait_for 5 "FLUSHDB detected" sh -c "[ \"\$(curl -sf http://$ADMIN/v1/status | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"wipes\"])')\" = $((W + 1)) ]"
assert_eq guard "$(mode)" "guard mode after FLUSHDB"
run op guard off

echo "# a delete of the poller's keys (the canary survives)"
wait_for 5 "rewarm after FLUSHDB" sh -c "[ \$(redis-cli -p $PORT --scan --pattern 'igor:*' | wc -l) -ge $IGOR_KEYS ]"
sleep 0.5 # the watcher takes its new sample from the baseline
W=$(json_get "$(gate_status)" "d['wipes']")
rcli --scan --pattern 'igor:*' | xargs redis-cli -p "$PORT" unlink >/dev/null
wait_for 5 "the key wipe is detected" sh -c "[ \"\$(curl -sf http://$ADMIN/v1/status | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"wipes\"])')\" = $((W + 1)) ]"
assert_contains "$(json_get "$(gate_status)" "d['guard']['reason']")" "keys" "the cause is the keys"
assert_eq 1 "$(rcli exists stormguard:canary)" "the canary was never deleted"
run op guard off

echo "# a restart without persistence"
wait_for 5 "rewarm after the key wipe" sh -c "[ \$(redis-cli -p $PORT --scan --pattern 'igor:*' | wc -l) -ge $IGOR_KEYS ]"
W=$(json_get "$(gate_status)" "d['wipes']")
restart_redis_empty
wait_for 15 "the restart is detected" sh -c "[ \"\$(curl -sf http://$ADMIN/v1/status | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"wipes\"])')\" = $((W + 1)) ]"
assert_contains "$(json_get "$(gate_status)" "d['guard']['reason']")" "restart" "the cause is the restart"
run op guard off

echo "# an announced flush: guard mode and a snapshot first, no rewarm after"
wait_for 5 "rewarm after the restart" sh -c "[ \$(redis-cli -p $PORT --scan --pattern 'igor:*' | wc -l) -ge $IGOR_KEYS ]"
R=$(json_get "$(gate_status)" "d['rewarms']")
run sg flush --match 'igor:*' --admin "$ADMIN" --json
assert_rc 0 "flush --match 'igor:*' announced to the daemon"
assert_eq true "$(json_get "$OUT" "d['announce']['confirmed']")" "the daemon confirmed"
assert_eq guard "$(mode)" "the daemon is in guard mode"
sleep 1.5
assert_eq 0 "$(rcli --scan --pattern 'igor:*' | wc -l)" "the flushed keys stay flushed (no rewarm)"
assert_eq "$R" "$(json_get "$(gate_status)" "d['rewarms']")" "no rewarm after an announced flush"

echo "# Redis down: the gate keeps serving, degraded"
stop_redis
wait_for 10 "link down" sh -c "[ \"\$(curl -sf http://$ADMIN/v1/status | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"redis\"][\"link\"])')\" != up ]"
admin_get /readyz
assert_eq 200 "$HTTP_STATUS" "still ready without Redis"
assert_contains "$REPLY" "wipes go unnoticed" "readyz says what is degraded"
post "$(igor_event team-a/service-3 900 $(($(cursor 3) + 60000)))" new pending "events are still classified and journaled"

stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM: exit 0"
finish
