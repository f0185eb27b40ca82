#!/usr/bin/env bash
# What an operator meets when deploying and running the gate:
#  - run guards the Igor profile by default and refuses --profile none;
#  - one daemon per store: a second run on the same --db exits 1 naming the
#    first one's pid;
#  - /livez answers, and /readyz stays 200 while the downstream is down
#    (the gate still journals), naming the downstream as degraded;
#  - a flush announce the daemon refuses (Redis unreachable) leaves it in
#    normal mode; flush --dry-run asks whether the daemon would confirm,
#    changing nothing, and exits 3 when it would not;
#  - --json errors are a JSON document on stdout; enumerated flags are
#    checked (exit 2); --admin takes http://ADDR:PORT; -V prints the version;
#  - observe mode forwards replays and what guard mode would hold, and
#    counts them (status, events, metrics), across a restart.
source "$SG_TESTS/lib.sh"

# status_is EXPR: the daemon's /v1/status makes the python expression true
status_is() { [ "$(json_get "$(gate_status)" "bool($1)")" = true ]; }

start_redis
seed_igor 3
start_sink

echo "# run: the Igor profile by default, --profile none refused"
run sgx run --profile none --db "$SG_DB" --downstream "$SINK_URL" --watch off \
    --listen "127.0.0.1:$(_sg_free_port)" --admin "127.0.0.1:$(_sg_free_port)"
assert_rc 2 "run --profile none: exit 2"
assert_contains "$ERR" "[profile] name (--profile): none: the gate would never snapshot" "the reason is named"
assert_contains "$ERR" "(igor, the default)" "and the way out"
printf '[profile]\nname = none\n' >"$TMP/none.ini"
run sgx config -c "$TMP/none.ini" --downstream "$SINK_URL"
assert_rc 2 "the same from a file, in the pre-start check: exit 2"
assert_contains "$ERR" "$TMP/none.ini:2: [profile] name: none: the gate would never snapshot" \
    "the file and line are named"
start_gate --redis "redis://127.0.0.1:$PORT" --check-interval-ms 200
wait_for 10 "the first periodic snapshot" status_is "(d['snapshot'] or {}).get('id', 0) > 0"
ST=$(gate_status)
assert_eq 3 "$(json_get "$ST" "d['snapshot']['jobs']")" \
    "without --profile the gate snapshots Igor's keys: 3 jobs in its baseline"

echo "# one daemon per store"
run sgx run --db "$SG_DB" --downstream "$SINK_URL" --watch off \
    --listen "127.0.0.1:$(_sg_free_port)" --admin "127.0.0.1:$(_sg_free_port)"
assert_rc 1 "a second run on the same store: exit 1"
assert_contains "$ERR" "the store $SG_DB is in use by another stormguard run (pid $GATE_PID)" \
    "the running daemon's pid is named"
admin_get /livez
assert_eq 200 "$HTTP_STATUS" "the first daemon is untouched: /livez 200"

echo "# flush --dry-run asks the daemon, changes nothing"
run sg flush --match 'igor:*' --dry-run --admin "$ADMIN"
assert_rc 0 "flush --dry-run with a daemon that would confirm: exit 0"
assert_contains "$OUT" "the stormguard daemon at $ADMIN is reachable and would confirm the announce" \
    "it says so"
assert_eq normal "$(json_get "$(gate_status)" "d['mode']")" "the dry run left the daemon in normal mode"
run sg flush --match 'igor:*' --dry-run --admin "$ADMIN" --json
assert_rc 0 "flush --dry-run --json: exit 0"
assert_eq '{"admin": "'"$ADMIN"'", "confirmed": false, "would_confirm": true}' \
    "$(json_get "$OUT" "d['announce']")" "--json: would_confirm, not confirmed"
DEAD=$(_sg_free_port)
run sg flush --match 'igor:*' --dry-run --admin "127.0.0.1:$DEAD"
assert_rc 3 "flush --dry-run with no daemon there: exit 3, as the flush would be"
assert_contains "$ERR" "dry run: the flush would be refused" "the dry run says the flush would be refused"
run sg flush --match 'igor:*' --dry-run --admin "127.0.0.1:$DEAD" --json
assert_rc 3 "the same with --json: exit 3"
assert_eq "refused 3" "$(json_get "$OUT" "d['outcome'] + ' ' + str(d['exit'])")" \
    "--json: the one document says refused, with the exit code"
assert_contains "$(json_get "$OUT" "d['error']")" "would not confirm the announce" "--json: and why"

echo "# an announce whose snapshot outlasts the caller's wait is not confirmed"
pipe_py "[['SET', 'igor:bulk:%d' % i, 'x' * 100] for i in range(20000)]"
admin_send POST /v1/flush '{"actor":"test","reason":"late","wait_ms":1}'
assert_eq 503 "$HTTP_STATUS" "a snapshot longer than wait_ms: 503"
assert_contains "$REPLY" "longer than the flush waits (1 ms): not confirmed" "the reason"
assert_eq normal "$(json_get "$(gate_status)" "d['mode']")" "the caller gone: no guard mode"
admin_send POST /v1/flush '{"actor":"test","wait_ms":0}'
assert_eq 400 "$HTTP_STATUS" "wait_ms 0: 400"

echo "# a refused announce leaves the daemon as it was"
stop_redis
wait_for 10 "the daemon sees Redis down" status_is "d['redis']['link'] != 'up'"
admin_send POST /v1/flush '{"actor":"test","reason":"refused"}'
assert_eq 503 "$HTTP_STATUS" "announce while Redis is unreachable: 503"
assert_contains "$REPLY" "Redis is unreachable" "the reason"
assert_eq normal "$(json_get "$(gate_status)" "d['mode']")" "a refused announce: still normal mode"
admin_send POST /v1/flush '{"dry_run":true}'
assert_eq false "$(json_get "$REPLY" "d['would_confirm']")" "POST /v1/flush dry_run: would not confirm"
assert_contains "$REPLY" "Redis is unreachable" "and why"
assert_eq normal "$(json_get "$(gate_status)" "d['mode']")" "still normal mode"
stop_gate

echo "# /readyz while the downstream is down"
start_gate --downstream "http://127.0.0.1:$DEAD" --retry-base-ms 100
gate_post / "$(igor_event team-a/service-1 500 1526040000000)"
assert_eq 200 "$HTTP_STATUS" "the gate journals while the downstream is down: 200"
wait_for 10 "the delivery fails" status_is "not d['downstream']['healthy']"
admin_get /readyz
assert_eq 200 "$HTTP_STATUS" "/readyz 200: the gate accepts and journals"
assert_contains "$(json_get "$REPLY" "d['degraded']")" "downstream http://127.0.0.1:$DEAD unreachable" \
    "/readyz names the downstream as degraded"
admin_get /livez
assert_eq 200 "$HTTP_STATUS" "/livez 200"

echo "# CLI: --json errors, enumerated flags, --admin URL, -V"
run sgx events --json --admin "127.0.0.1:$DEAD"
assert_rc 1 "events with no daemon: exit 1"
assert_eq 1 "$(json_get "$OUT" "d['exit']")" "--json: the error document's exit"
assert_contains "$(json_get "$OUT" "d['error']")" "127.0.0.1:$DEAD" "--json: the error names the admin API"
run sgx events --state bogus --json --admin "$ADMIN"
assert_rc 2 "events --state bogus --json: exit 2"
assert_eq 2 "$(json_get "$OUT" "d['exit']")" "an option error before --json is a JSON document too"
for bad in "--state bogus" "--kind bogus" "--limit 0"; do
    # shellcheck disable=SC2086
    run sgx events $bad --admin "$ADMIN"
    assert_rc 2 "events $bad: exit 2"
    assert_contains "$ERR" "${bad%% *} ${bad#* }: not" "events $bad: named"
done
run sgx events --admin "http://$ADMIN/"
assert_rc 0 "--admin http://ADDR:PORT/ works"
assert_contains "$OUT" "team-a/service-1" "and shows the event"
run sgx events --admin "https://$ADMIN"
assert_rc 2 "--admin https://: exit 2"
assert_contains "$ERR" "plain HTTP" "https is refused with the reason"
run sgx -V
assert_rc 0 "-V: exit 0"
assert_eq "$(sgx version | head -1)" "$(echo "$OUT" | head -1)" "-V prints what version prints"
stop_gate

echo "# observe mode: everything forwarded, what would have been done counted"
start_gate --observe
assert_eq observe "$(json_get "$(gate_status)" "d['gate_mode']")" "status: gate_mode observe"
N0=$(sink_count)
gate_post / "$(igor_event team-a/service-1 101 1526040000000)"
assert_eq replay "$(json_get "$REPLY" "d['kind']")" "a build the snapshot has: a replay"
assert_eq pending "$(json_get "$REPLY" "d['state']")" "observe mode: pending delivery, not suppressed"
gate_post / "$(igor_event team-a/service-1 900 1526040000000)"
gate_post / "$(igor_event team-a/service-1 900 1526040000000)"
assert_eq replay "$(json_get "$REPLY" "d['kind']")" "the same build again: the ledger's replay"
admin_send POST /v1/guard '{"reason":"observe test"}'
assert_eq 200 "$HTTP_STATUS" "guard mode on"
gate_post / "$(igor_event team-z/unknown-1 7 1526040000000)"
assert_eq unknown "$(json_get "$REPLY" "d['kind']")" "a job no snapshot has, in guard mode: unknown"
# delivered_all: the four posted since N0 reached the sink (a pending event
# of the gate before, sent to a dead downstream, may come in between)
delivered_all() {
    [ "$(sink_py "print(sorted(r['body'].split('/job/')[1] for r in ok[$N0:]
        if 'service-1/500/' not in r['body']))")" = \
        "['team-a/service-1/101/\"}}}}', 'team-a/service-1/900/\"}}}}', 'team-a/service-1/900/\"}}}}', 'team-z/unknown-1/7/\"}}}}']" ]
}
wait_for 10 "every event reaches the downstream, replays included" delivered_all
ok "every event reached the downstream, replays included"
ST=$(gate_status)
assert_eq '{"dropped": 0, "held": 1, "suppressed": 2}' "$(json_get "$ST" "d['would']")" \
    "status: would have suppressed 2, held 1"
run sgx status --admin "$ADMIN"
assert_contains "$OUT" "observe mode: every event is forwarded; it would have suppressed 2, held 1" \
    "status (text) says so"
run sgx events --admin "$ADMIN" --json
assert_eq "held suppressed - suppressed" \
    "$(json_get "$OUT" "' '.join(e.get('would', '-') for e in d['events'][:4])")" \
    "events: the newest four with what would have been done (the new build: nothing)"
run sgx events --admin "$ADMIN"
assert_contains "$OUT" "(would be held)" "events (text) shows it"
admin_get /metrics
assert_contains "$REPLY" 'stormguard_events_would{state="suppressed"} 2' "metrics: would suppressed"
assert_contains "$REPLY" 'stormguard_observe_mode 1' "metrics: observe mode"
stop_gate
start_gate
ST=$(gate_status)
assert_eq "enforce 2" "$(json_get "$ST" "d['gate_mode'] + ' ' + str(d['would']['suppressed'])")" \
    "restarted in enforce mode: the journal still counts what observe mode forwarded"
gate_post / "$(igor_event team-a/service-1 101 1526040000000)"
assert_eq suppressed "$(json_get "$REPLY" "d['state']")" "enforce mode suppresses the replay"
stop_gate

echo "# observe mode leaves Redis alone: no rewarm after a wipe"
start_redis
seed_igor 3
start_gate --observe --rewarm on --redis "redis://127.0.0.1:$PORT" --check-interval-ms 200 \
    --db "$TMP/observe-rewarm.db"
wait_for 10 "the first periodic snapshot" status_is "(d['snapshot'] or {}).get('id', 0) > 0"
rcli flushall >/dev/null
wait_for 10 "the wipe noticed" status_is "d['wipes'] >= 1"
sleep 1
assert_eq 0 "$(rcli keys 'igor:*' | grep -c . || true)" "observe mode with --rewarm on: Igor's keys not restored"
stop_gate
finish
