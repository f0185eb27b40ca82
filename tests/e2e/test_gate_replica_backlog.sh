#!/usr/bin/env bash
# An analyze of the event table while nothing was pending (autovacuum's on
# an idle gate) leaves the planner counting the pending events' partial
# indexes empty, however big a backlog grows behind it: a replica's
# claims, outcomes and releases of lapsed claims then walked the whole
# backlog for each row, and deliveries all but stopped. A replica finds
# such statistics stale by the pending events it counts (every 5 s, with
# the ages: 1,000 at least and 4 times those the planner counts on) and
# renews them, saying so in its log. Autovacuum is off here, so that the
# replica's is the analyze that runs.
source "$SG_TESTS/lib.sh"
SG_STORE_BACKEND=pg
start_postgres
start_sink
start_gate

NOW=$(($(date +%s%N) / 1000000))
echo "# an idle gate's history: 20,000 forwarded events, analyzed with nothing pending"
psql_q "ALTER TABLE event SET (autovacuum_enabled = off)" >/dev/null
psql_q "INSERT INTO event(received_at, source, job, number, kind, reason, state, method, path,
        headers, body, done_at) SELECT $NOW, 'jenkins-prod', 'job-' || (n % 500), n, 'new', 'test',
        'forwarded', 'POST', '/', '', '{}', $NOW FROM generate_series(1, 20000) AS n" >/dev/null
psql_q "ANALYZE event" >/dev/null
analyzes() { psql_q "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'event'"; }
BEFORE=$(analyzes)

echo "# a backlog: 5,000 pending events another replica journaled, due in an hour"
psql_q "INSERT INTO event(received_at, source, job, number, kind, reason, state, method, path,
        headers, body, next_attempt_at) SELECT $NOW, 'jenkins-prod', 'job-' || (n % 500),
        100000 + n, 'new', 'test', 'pending', 'POST', '/', '', '{}', $NOW + 3600000
        FROM generate_series(1, 5000) AS n" >/dev/null
logged() { grep -q "renewed the planner's statistics of the event table (5000 events pending, where they counted" "$GATE_LOG"; }
wait_for 20 "the replica renews the statistics of the backlog, saying so" logged
grep "renewed the planner's statistics" "$GATE_LOG" | sed 's/^/# /'
assert_le $((BEFORE + 1)) "$(analyzes)" "PostgreSQL analyzed the table again"
planned=$(psql_q "EXPLAIN SELECT 1 FROM event WHERE state = 'pending'" | head -1 |
  sed -n 's/.* rows=\([0-9]*\).*/\1/p')
assert_le 1250 "$planned" "the planner now counts on the backlog (rows=$planned)"
finish
