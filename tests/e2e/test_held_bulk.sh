#!/usr/bin/env bash
# A held queue of thousands, as a storm leaves it: release --newest-only and
# drop work through it in chunks (several journal transactions) and the
# totals add up: one build per job reaches the sink, every other build is
# superseded or dropped, one audit row per command; the held summary lists
# the jobs with the most held events; the gate answers posts meanwhile.
source "$SG_TESTS/lib.sh"

start_sink
start_gate
stop_gate # the store now has the daemon's schema

# held_rows JOB FROM TO: held events of JOB, builds FROM..TO, in build order
held_rows() {
    sql "WITH RECURSIVE n(i) AS (SELECT $2 UNION ALL SELECT i + 1 FROM n WHERE i < $3)
        INSERT INTO event(received_at, source, job, number, build_ts, kind, reason, state, method,
                          path, headers, body)
        SELECT 1700000000000 + i, 'jenkins-prod', '$1', i, 1700000000000 + i, 'unknown',
               'job unknown to snapshot and ledger', 'held', 'POST', $(sql_bytes "'/'"),
               $(sql_bytes "'content-type: application/json' || $(sql_newline)"),
               $(sql_bytes "'{\"details\":{\"type\":\"build\"},\"job\":\"$1\",\"number\":' || i || '}'")
        FROM n;
        INSERT INTO ledger(source, job, number, accepted_at, event_id)
        SELECT source, job, number, received_at, id FROM event WHERE job = '$1';"
}
# job big: 7,000 builds, oldest first, so the first chunks hold nothing else
held_rows team-a/big 1 7000
held_rows team-b/small 1 3
held_rows team-c/other 1 12000
restart_gate
assert_eq 19003 "$(json_get "$(gate_status)" "d['held']")" "19,003 events held after the restart"

echo "# the held summary: the jobs with the most, and the totals"
run "$SG_BIN" held --admin "$ADMIN" --limit 2 --json
assert_rc 0 "held --limit 2"
assert_eq "team-c/other:12000 team-a/big:7000" \
    "$(json_get "$OUT" "' '.join('%s:%d' % (j['job'], j['count']) for j in d['jobs'])")" \
    "the two jobs with the most held events, most first"
assert_eq "19003 3" "$(json_get "$OUT" "'%d %d' % (d['held'], d['jobs_total'])")" \
    "totals over all three jobs"

echo "# release --newest-only of two jobs through the chunks"
run "$SG_BIN" release --admin "$ADMIN" --job 'team-[ab]/*' --newest-only --json
assert_rc 0 "release --job 'team-[ab]/*' --newest-only"
assert_eq "2 7001" "$(json_get "$OUT" "'%d %d' % (d['released'], d['superseded'])")" \
    "2 released (the newest of each job), 7,001 superseded"
wait_for 10 "both released builds reach the sink" sh -c "[ \"\$(curl -sf http://$ADMIN/v1/status | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"pending\"])')\" = 0 ]"
sleep 0.3
assert_eq 2 "$(sink_count)" "the sink got exactly two builds"
assert_eq "team-a/big:7000 team-b/small:3" \
    "$(sink_py 'print(" ".join(sorted("%s:%d" % (json.loads(r["body"])["job"], json.loads(r["body"])["number"]) for r in ok)))')" \
    "and they are each job's newest"

echo "# drop the rest while posting"
(for i in $(seq 1 20); do
    gate_post / "$(igor_event team-d/fresh $i 1526040000000)" >/dev/null 2>&1 || true
done) &
POSTER=$!
run "$SG_BIN" drop --admin "$ADMIN" --all --reason "stale after the storm" --json
assert_rc 0 "drop --all"
assert_eq 12000 "$(json_get "$OUT" "d['dropped']")" "12,000 dropped"
wait "$POSTER"
assert_eq 0 "$(json_get "$(gate_status)" "d['held']")" "nothing held any more"
assert_eq 12000 "$(sql "SELECT count(*) FROM event WHERE state = 'dropped' AND last_error = 'stale after the storm'")" \
    "every dropped event carries the reason"
assert_eq "release drop" "$(sql "SELECT action FROM audit WHERE action IN ('release', 'drop') ORDER BY id" | paste -sd ' ')" \
    "one audit row per command, not per chunk"
assert_eq 20 "$(sql "SELECT count(*) FROM event WHERE job = 'team-d/fresh'")" \
    "the gate journaled the posts made during the drop"
stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM: exit 0"
finish
