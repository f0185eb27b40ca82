#!/usr/bin/env bash
# The journal's retention ([store] keep_events): shortly after the start,
# events older than it that are done with (forwarded, suppressed, dropped,
# superseded) are deleted in chunks; held, pending and dead ones stay, and
# so does the ledger: a pruned build's second delivery is still a replay.
source "$SG_TESTS/lib.sh"

start_sink
start_gate
stop_gate # the store now has the daemon's schema

OLD=1600000000000 # 2020
NOW=$(($(date +%s) * 1000))
# rows N STATE RECEIVED_AT JOB
rows() {
    sql "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)
        INSERT INTO event(received_at, source, job, number, build_ts, kind, reason, state, method,
                          path, headers, body, done_at)
        SELECT $3 + i, 'jenkins-prod', '$4', i, $3 + i, 'new', 'test', '$2', 'POST',
               $(sql_bytes "'/'"), $(sql_bytes "''"), $(sql_bytes "'{}'"),
               CASE WHEN '$2' IN ('held', 'pending') THEN NULL ELSE $3 + i END FROM n;
        INSERT INTO ledger(source, job, number, accepted_at, event_id)
        SELECT source, job, number, received_at, id FROM event WHERE job = '$4'
        ON CONFLICT DO NOTHING;"
}
rows 12000 forwarded $OLD team-a/old   # more than two chunks
rows 5 suppressed $OLD team-b/old
rows 3 held $OLD team-c/held
rows 2 dead $OLD team-d/dead
rows 4 forwarded $NOW team-e/recent

GATE_ARGS=(--keep-events 30d)
restart_gate
count() { sql "SELECT count(*) FROM event WHERE job = '$1'"; }
wait_for 30 "the first retention pass" grep -q "pruned 12005 events older than 2592000s" "$GATE_LOG"
assert_eq 0 "$(count team-a/old)" "old forwarded events are gone"
assert_eq 0 "$(count team-b/old)" "old suppressed events are gone"
assert_eq 3 "$(count team-c/held)" "held events stay, however old"
assert_eq 2 "$(count team-d/dead)" "dead events stay"
assert_eq 4 "$(count team-e/recent)" "recent events stay"
assert_eq 12014 "$(sql "SELECT count(*) FROM ledger")" "the ledger keeps every build"
gate_post / "$(igor_event team-a/old 7 1600000000007)"
assert_eq "replay/suppressed" "$(json_get "$REPLY" "d['kind'] + '/' + d['state']")" \
    "a pruned build's second delivery is still a replay"
stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM: exit 0"

echo "# keep_events 0 keeps everything"
rows 10 forwarded $OLD team-f/old
GATE_ARGS=(--keep-events 0)
restart_gate
sleep 11.5 # past the moment the first pass would run
assert_eq 10 "$(count team-f/old)" "nothing pruned with --keep-events 0"
stop_gate
finish
