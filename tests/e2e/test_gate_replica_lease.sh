#!/usr/bin/env bash
# A replica's lease is renewed on a connection of its own, whose statements
# give up after 2 s: neither a read of the reader's queue that the store
# keeps waiting (a table the mode reads use, locked by another session for
# longer than the lease) nor a renewal waiting itself (the event table
# locked likewise) lets the lease run out, so the other replicas do not
# deliver its claims again. Nor do the replica's claims wait for that read:
# they have a connection of their own too, so a job's second build, which
# only a claim from the table brings, is delivered while the read waits.
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

LOCK_S=12
# lock_past_lease TABLE WAITER [DURING]: another session holds TABLE locked
# for LOCK_S s; once a statement of the replica matching WAITER (SQL LIKE)
# waits for it, DURING runs (at most 3 s), and 6.5 s later (past the 5 s
# lease, the lock still held), the lease must be live
lock_past_lease() {
    local table=$1 waiter=$2 during=${3:-} locker
    PGCONNECT_TIMEOUT=10 "$PG_BINDIR/psql" -X -q -d "$PG_URL" -c "BEGIN" \
        -c "LOCK TABLE $table IN ACCESS EXCLUSIVE MODE" -c "SELECT pg_sleep($LOCK_S)" \
        -c "COMMIT" </dev/null >"$TMP/lock-$table.log" 2>&1 &
    locker=$!
    locked() {
        run sql "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                 WHERE c.relname = '$table' AND l.mode = 'AccessExclusiveLock' AND l.granted"
        [ "$OUT" = 1 ]
    }
    wait_for 5 "another session locks $table" locked
    stuck() {
        run sql "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND \
                 query LIKE '$waiter'"
        [ "$OUT" -ge 1 ]
    }
    wait_for 5 "a statement of the replica waits for the lock on $table" stuck
    [ -z "$during" ] || "$during"
    sleep 6.5
    kill -0 "$locker" 2>/dev/null || fail "the locking session ended before the check"
    locked || fail "$table is no longer locked at the check"
    lease_live || fail "the lease ran out while $table was locked: $(sql 'SELECT * FROM replica')"
    ok "the lease stayed live 6.5 s into a wait for the lock on $table"
    wait "$locker" || fail "the locking session failed: $(cat "$TMP/lock-$table.log")"
}
delivered() { [ "$(sink_py 'print(len(ok))')" -ge "$1" ]; }
# two builds of one job: the first goes as it is journaled, the second
# (posted while the sink takes 500 ms over the first) behind it once a
# claim from the table brings it
second_build_delivered() {
    sink_set 200 500
    for n in 1 2; do
        gate_post / "$(igor_event team-a/behind $n 1526031000000)"
        assert_eq 200 "$HTTP_STATUS" "build $n of one job, posted while the read waits, is answered 200"
    done
    wait_for 3 "both reach the sink while the read waits: claims do not wait for it" delivered 2
    sink_set 200
}
# a mode read of the reader's queue waits: the lease and the claims have
# their own connections
lock_past_lease gate_mode '%gate_mode%' second_build_delivered
# the renewal itself waits (its release of lapsed claims): it gives up
# after 2 s, and the next one renews
lock_past_lease event '%claimed_by = NULL%'
assert_contains "$(cat "$GATE_LOG")" "statement timeout" "the renewal that waited gave up"

# the read went through once the lock went: the replica works on
body=$(igor_event team-a/lease 7 1526031000000)
gate_post / "$body"
assert_eq 200 "$HTTP_STATUS" "a build posted after the lock is answered 200"
wait_for 10 "the build reaches the sink" delivered 3
stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM, exit 0"
finish
