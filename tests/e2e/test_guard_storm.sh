#!/usr/bin/env bash
# Storm mode and the on_storm policies, end to end: the same-job signal puts
# one source in storm mode (another source stays normal), unknown builds of
# that source are held while new builds still go through, the drain releases
# the newest build per job at drain_rate, the storm ends after its cooldown
# without releasing anything by itself, on_storm = drop drops. Periodic
# snapshots: a snapshot taken after the poller's keys vanished is suspect and
# never becomes the baseline.
source "$SG_TESTS/lib.sh"

start_redis
seed_igor 5
run sg snapshot --profile igor --json
assert_rc 0 "snapshot --profile igor"
SNAP1=$(json_get "$OUT" "d['snapshot_id']")
start_sink

cursor() { echo $((1526030000000 + $1 * 1000)); }
mode() { json_get "$(gate_status)" "d['mode']"; }
status_is() { [ "$(json_get "$(gate_status)" "$1")" = "$2" ]; }
post() {
    gate_post / "$1"
    [ "$HTTP_STATUS" = 200 ] || fail "$4: HTTP $HTTP_STATUS: $REPLY"
    assert_eq "$2/$3" "$(json_get "$REPLY" "d['kind'] + '/' + d['state']")" "$4"
}
delivered() { # JOB: build numbers of JOB the sink got, in order
    sink_py 'print(" ".join(str(json.loads(r["body"])["content"]["project"]["lastBuild"]["number"]) for r in ok if json.loads(r["body"])["content"]["project"]["name"] == sys.argv[1]))' "$1"
}

echo "# the same-job signal: storm mode for one source"
start_gate --watch off --storm-same-job 3 --storm-cooldown 60s --on-storm drain --drain-rate 2
post "$(igor_event team-a/service-1 201 $(($(cursor 1) + 1000)))" new pending "build 201 of service-1: new"
post "$(igor_event team-a/service-1 202 $(($(cursor 1) + 2000)))" new pending "build 202: new"
assert_eq normal "$(mode)" "two builds of one job: still normal"
post "$(igor_event team-a/service-1 203 $(($(cursor 1) + 3000)))" new pending \
    "build 203: the third within the window trips the signal, and a new build is still forwarded"
assert_eq storm "$(mode)" "storm mode"
ST=$(gate_status)
assert_eq jenkins-prod "$(json_get "$ST" "d['storms'][0]['source']")" "the storm is scoped to jenkins-prod"
assert_contains "$(json_get "$ST" "d['storms'][0]['trigger']")" "3" "the trigger names the numbers"
assert_contains "$(cat "$GATE_LOG")" "storm signal same_job on jenkins-prod" "the signal is logged"
post "$(igor_event team-b/elsewhere 1 1526040000000 jenkins-other)" unknown pending \
    "an unknown build of another source is forwarded"

echo "# the drain: newest build per job, at drain_rate"
for n in 1 2 3; do
    post "$(igor_event team-q/late $n 1526040000000)" unknown held "unknown team-q/late build $n is held"
done
wait_for 10 "the drain empties the held queue" status_is "d['held']" 0
wait_for 10 "build 3 of team-q/late reaches the sink" sh -c "[ \"\$(curl -sf http://$ADMIN/v1/status | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"pending\"])')\" = 0 ]"
GOT=$(delivered team-q/late)
assert_contains " $GOT" " 3" "the newest build, 3, was delivered"
assert_eq "$(echo "$GOT" | tr ' ' '\n' | sort | uniq -d)" "" "no build was delivered twice"
run sql "SELECT count(*) FROM event WHERE job = 'team-q/late' AND state = 'superseded'"
assert_eq $((3 - $(echo "$GOT" | wc -w))) "$OUT" "the builds not delivered were superseded"
run sql "SELECT count(*) FROM audit WHERE action = 'drain'"
[ "$OUT" -ge 1 ] || fail "the drain is audited"
ok "the drain is audited"

echo "# the storm ends after its cooldown; held events stay held"
stop_gate
start_gate --watch off --storm-same-job 3 --storm-cooldown 5s --on-storm hold
for n in 301 302 303; do
    gate_post / "$(igor_event team-a/service-2 $n $(($(cursor 2) + n)))"
done
assert_eq storm "$(mode)" "storm mode again (on_storm = hold)"
post "$(igor_event team-h/held 1 1526040000000)" unknown held "an unknown build is held"
wait_for 20 "the storm ends" status_is "d['mode']" normal
sleep 1.5 # a drain would have run by now
assert_eq 1 "$(json_get "$(gate_status)" "d['held']")" "leaving storm mode released nothing"
assert_contains "$(cat "$GATE_LOG")" "stay held until released or dropped" "the log says events stay held"
assert_eq "" "$(delivered team-h/held)" "the held build was not delivered"

echo "# on_storm = drop"
stop_gate
start_gate --watch off --on-storm drop
"$SG_BIN" guard on --admin "$ADMIN" --reason test >/dev/null || fail "guard on"
post "$(igor_event team-d/dropped 1 1526040000000)" unknown dropped "guard mode, on_storm = drop: dropped"
run sql "SELECT last_error FROM event WHERE job = 'team-d/dropped'"
assert_contains "$OUT" "on_storm = drop" "the event says why it was dropped"
stop_gate

echo "# periodic snapshots; one taken after the keys vanished is suspect, never the baseline"
start_gate --redis "redis://127.0.0.1:$PORT" --profile igor --snapshot-interval 1s --check-interval-ms 200
wait_for 15 "a periodic snapshot becomes the baseline" sh -c "[ \"\$(curl -sf http://$ADMIN/v1/status | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"snapshot\"][\"id\"])')\" != $SNAP1 ]"
rcli --scan --pattern 'igor:*' | xargs redis-cli -p "$PORT" unlink >/dev/null
suspect_taken() { [ "$(sql "SELECT count(*) FROM snapshot WHERE state = 'suspect'")" != 0 ]; }
wait_for 15 "a suspect snapshot is taken" suspect_taken
sleep 6 # the baseline is looked for every 5 s
BASE=$(json_get "$(gate_status)" "d['snapshot']['id']")
run sql "SELECT state FROM snapshot WHERE id = $BASE"
assert_eq complete "$OUT" "the baseline is a complete snapshot"
run sql "SELECT count(*) FROM snapshot WHERE state = 'suspect' AND id > $BASE"
assert_ne 0 "$OUT" "the newer suspect snapshots did not become the baseline"
assert_contains "$(cat "$GATE_LOG")" "is suspect and not a baseline" "the log says so"
stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM: exit 0"

echo "# second deliveries the journal tells count as replays for the storm detector"
start_gate --watch off --storm-replay-share 50 --storm-replay-min 4 --storm-same-job 0 \
    --storm-first-seen 0 --storm-rate-factor 0
for n in 1 2; do
    post "$(igor_event team-r/redeliver-$n 5 1526040000000)" unknown pending "team-r/redeliver-$n build 5 forwarded"
done
assert_eq normal "$(mode)" "normal mode after two new builds"
for n in 1 2; do
    post "$(igor_event team-r/redeliver-$n 5 1526040000000)" replay suppressed "its second delivery is a replay"
done
in_storm() { [ "$(mode)" = storm ]; }
wait_for 5 "2 replays of 4 events trip replay_share" in_storm
assert_contains "$(cat "$GATE_LOG")" "storm signal replay_share on jenkins-prod: 2 of 4 builds" "the log names the signal"
stop_gate
finish
