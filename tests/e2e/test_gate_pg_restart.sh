#!/usr/bin/env bash
# The store on PostgreSQL, restarted while builds stream in: while it is
# down the gate answers 503 with Retry-After and /readyz is not ready; once
# it is back the gate reconnects by itself, and every event answered 200 is
# journaled and reaches the downstream, each build as one event (a post
# answered 503 whose commit did reach the server is a replay when retried).
source "$SG_TESTS/lib.sh"
SG_STORE_BACKEND=pg
start_postgres

N=300
JOBS=20

start_redis
seed_igor $JOBS
run sg snapshot --profile igor
assert_rc 0 "snapshot --profile igor of $JOBS jobs on PostgreSQL"

start_sink
start_gate

stream_start $N $JOBS 3
wait_for 30 "the gate accepted 100 events" stream_has_accepted 100
stop_postgres
BEFORE=$(stream_accepted)
echo "# PostgreSQL stopped after $BEFORE events answered 200"

# a post now fails, nothing half-written: 503 with Retry-After
gate_post / "$(igor_event team-z/probe 1 1526040000000)" -D "$TMP/probe.headers"
assert_eq 503 "$HTTP_STATUS" "a post while PostgreSQL is down: 503"
assert_contains "$(tr -d '\r' <"$TMP/probe.headers" | tr 'A-Z' 'a-z')" "retry-after: 1" "with Retry-After"
not_ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$ADMIN/readyz")" = 503 ]; }
wait_for 10 "/readyz not ready while PostgreSQL is down" not_ready
sleep 2

restart_postgres # stopped already: it starts it again, same data and port
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$ADMIN/readyz")" = 200 ]; }
wait_for 20 "/readyz ready again once PostgreSQL is back" ready

stream_finish 90
FAILED=$(awk -F'\t' '$2 != 200' "$TMP/posts.tsv" | wc -l)
echo "# $FAILED attempts were not answered 200 (PostgreSQL was down)"
assert_ne 0 "$FAILED" "some posts met the store down"
assert_eq 0 "$(awk -F'\t' '$2 != 200 && $2 != 503' "$TMP/posts.tsv" | wc -l)" \
    "every post not answered 200 was answered 503"
stream_verify >"$TMP/verify.out"
assert_eq ok "$(cat "$TMP/verify.out")" \
    "all $N builds accepted, journaled, delivered; duplicates only as re-deliveries of one event id"
assert_eq "$N" "$(json_get "$(gate_status)" "d['ledger']")" "the ledger holds the $N builds"

stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM: exit 0"
finish
