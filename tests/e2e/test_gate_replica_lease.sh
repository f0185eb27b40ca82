#!/usr/bin/env bash
# A replica's lease is renewed on a connection of its own: a read of the
# reader's queue that the store keeps waiting (here a table the mode reads
# use, locked by another session for longer than the lease) does not let
# the lease run out, so the other replicas do not deliver its claims again.
source "$SG_TESTS/lib.sh"
SG_STORE_BACKEND=pg
start_postgres
start_redis
start_sink
start_gate
lease_live() {
    run sql "SELECT count(*) FROM replica WHERE lease_until >= \
             (extract(epoch FROM clock_timestamp()) * 1000)::bigint"
    [ "$OUT" = 1 ]
}
wait_for 10 "the replica's lease is live" lease_live

LOCK_S=9
PGCONNECT_TIMEOUT=10 "$PG_BINDIR/psql" -X -q -d "$PG_URL" -c "BEGIN" \
    -c "LOCK TABLE gate_mode IN ACCESS EXCLUSIVE MODE" -c "SELECT pg_sleep($LOCK_S)" \
    -c "COMMIT" </dev/null >"$TMP/lock.log" 2>&1 &
locker=$!
locked() {
    run sql "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
             WHERE c.relname = 'gate_mode' AND l.mode = 'AccessExclusiveLock' AND l.granted"
    [ "$OUT" = 1 ]
}
wait_for 5 "another session locks gate_mode" locked
stuck() {
    run sql "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND \
             query LIKE '%gate_mode%'"
    [ "$OUT" -ge 1 ]
}
wait_for 5 "the replica's mode read waits for the lock" stuck
# past the 5 s lease, the lock still held
sleep 6.5
kill -0 "$locker" 2>/dev/null || fail "the locking session ended before the check"
locked || fail "gate_mode is no longer locked at the check"
lease_live || fail "the lease ran out while a read waited: $(sql 'SELECT * FROM replica')"
ok "the lease stayed live 6.5 s into a read waiting for a lock"
wait "$locker" || fail "the locking session failed: $(cat "$TMP/lock.log")"

# the read went through once the lock went: the replica works on
body=$(igor_event team-a/lease 7 1526031000000)
gate_post / "$body"
assert_eq 200 "$HTTP_STATUS" "a build posted after the lock is answered 200"
at_sink() { [ "$(sink_py 'print(len(ok))')" -ge 1 ]; }
wait_for 10 "the build reaches the sink" at_sink
stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM, exit 0"
finish
