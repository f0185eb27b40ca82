#!/usr/bin/env bash
# A replica counts the whole set's events with a scan of the journal, which
# a long retention makes millions of rows: it counts with the ages (every
# 5 s) but never sooner than 100 times the last count took, so the count
# costs the store 1% of its time at most. Its status says when it counted,
# how long that took and when it counts next; a row another replica added
# shows in the counts by then. A table grown that much gets its planner's
# statistics renewed by the replica, not a minute later by autovacuum
# (turned off here, so that the replica's is the analyze that runs).
source "$SG_TESTS/lib.sh"
SG_STORE_BACKEND=pg
start_postgres
start_sink
start_gate

counted() { json_get "$(gate_status)" "d['counted']['$1']"; }
new_forwarded() { json_get "$(gate_status)" "d['counts']['new'].get('forwarded', 0)"; }
has_count() { [ "$(counted at)" != None ]; }
wait_for 10 "a first count of the set's events" has_count
assert_eq 0 "$(new_forwarded)" "an empty store counts nothing"

echo "# 400,000 forwarded events another replica journaled (now: the retention keeps them)"
NOW=$(($(date +%s%N) / 1000000))
psql_q "ALTER TABLE event SET (autovacuum_enabled = off)" >/dev/null
psql_q "INSERT INTO event(received_at, source, job, number, kind, reason, state, method, path,
        headers, body, done_at) SELECT $NOW, 'jenkins-prod', 'job-' || (n % 500), n, 'new', 'test',
        'forwarded', 'POST', '/', '', '{}', $NOW FROM generate_series(1, 400000) AS n" \
    >/dev/null
analyzed() { [ "$(psql_q "SELECT count(*) FROM pg_stat_user_tables WHERE relname = 'event'
                          AND last_analyze IS NOT NULL")" = 1 ]; }
wait_for 15 "the replica analyzes the grown event table" analyzed
logged() { grep -q "renewed the planner's statistics of the event table (400" "$GATE_LOG"; }
wait_for 5 "its log says so, with the rows changed" logged
seen_all() { [ "$(new_forwarded)" = 400000 ]; }
wait_for 15 "the replica counts them" seen_all
AT=$(counted at) TOOK=$(counted took_ms) NEXT=$(counted next)
echo "# counted at $AT in $TOOK ms, next at $NEXT"
gap_ms() { python3 -c "
import datetime, sys
t = [datetime.datetime.fromisoformat(a.replace('Z', '+00:00')) for a in sys.argv[1:]]
print(int((t[1] - t[0]).total_seconds() * 1000))" "$1" "$2"; }
want=$((TOOK * 100 > 5000 ? TOOK * 100 : 5000))
GAP=$(gap_ms "$AT" "$NEXT")
assert_le "$want" "$((GAP + 1))" "the next count waits 100 times the last one's $TOOK ms (5 s at least)"

psql_q "INSERT INTO event(received_at, source, job, number, kind, reason, state, method, path,
        headers, body, done_at) VALUES ($NOW, 'jenkins-prod', 'job-x', 1, 'new', 'test',
        'forwarded', 'POST', '/', '', '{}', $NOW)" >/dev/null
one_more() { [ "$(new_forwarded)" = 400001 ]; }
wait_for $((GAP / 1000 + 10)) "the next count sees the event added since" one_more
AT2=$(counted at)
GAP2=$(gap_ms "$AT" "$AT2")
echo "# counted again $GAP2 ms later"
assert_le "$((want - 1000))" "$GAP2" "not counted again before its pause was over"
finish
