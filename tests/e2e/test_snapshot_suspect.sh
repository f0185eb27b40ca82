#!/usr/bin/env bash
# A profile snapshot that finds far fewer Igor keys than the last good one
# (Redis was wiped and the poller has rebuilt a little) is kept as suspect:
# exit 0, state and reason in the output and in `snapshots`, never what
# `restore latest` takes, still restorable by id. Only profile keys count
# (--match extras do not); --suspect-below sets the threshold, 0 turns it off.
source "$SG_TESTS/lib.sh"

start_redis

# snapshot_json ARGS...: runs `sg snapshot --profile igor ARGS --json`, expects
# exit 0, sets J, SID and STATE
snapshot_json() {
    run sg snapshot --profile igor "$@" --json
    assert_rc 0 "snapshot --profile igor $*"
    J=$OUT
    SID=$(json_get "$J" "d['snapshot_id']")
    STATE=$(json_get "$J" "d['state']")
}

# extras N: N extra:* keys (not Igor's)
extras() {
    pipe_py "[['SET', 'extra:%d' % i, 'e'] for i in range($1)]"
}

echo "# a good snapshot: 1000 Igor jobs (2000 keys) and 5 extra keys"
seed_igor 1000
extras 5
snapshot_json --match 'extra:*'
GOOD=$SID
assert_eq complete "$STATE" "the first snapshot is complete"
assert_eq 2005 "$(json_get "$J" "d['keys']")" "2005 keys taken"
assert_eq 2000 "$(json_get "$J" "d['profile_keys']")" "2000 of them are igor keys"
assert_eq null "$(json_get "$J" "d.get('suspect_reason')")" "no suspect reason"

echo "# wiped: Igor rebuilt 3 keys; 3000 extra keys do not make up for it"
rcli flushall >/dev/null
seed_igor 1
rcli hset 'igor:jenkins-prod:TEAM-B/APP:team-b/app' lastPollCycleTimestamp 1526039999000 >/dev/null
extras 3000
snapshot_json --match 'extra:*'
BAD=$SID
REASON="found 3 igor keys, the last good snapshot $GOOD had 2000 (below 50%)"
assert_eq suspect "$STATE" "state suspect"
assert_eq 3003 "$(json_get "$J" "d['keys']")" "every selected key was still taken"
assert_eq 3 "$(json_get "$J" "d['profile_keys']")" "3 igor keys"
assert_eq "$REASON" "$(json_get "$J" "d['suspect_reason']")" "JSON gives the reason"

run sg snapshot --profile igor --match 'extra:*'
assert_rc 0 "a suspect snapshot exits 0 (it was taken)"
BAD2=$(echo "$OUT" | sed -n 's/^snapshot \([0-9]*\) SUSPECT:.*/\1/p')
assert_ne "" "$BAD2" "text output says SUSPECT: $(echo "$OUT" | head -n 1)"
assert_contains "$OUT" "suspect: $REASON" "text output gives the reason"
assert_contains "$OUT" "restore it by id" "text output says restore latest will not take it"

echo "# snapshots lists it as suspect, with the reason"
run sg snapshots --json
assert_rc 0 "snapshots --json"
L=$OUT
assert_eq suspect "$(json_get "$L" "[s for s in d['snapshots'] if s['id'] == $BAD][0]['state']")" "listed state suspect"
assert_eq "$REASON" "$(json_get "$L" "[s for s in d['snapshots'] if s['id'] == $BAD][0]['suspect_reason']")" "listed reason"
assert_eq complete "$(json_get "$L" "[s for s in d['snapshots'] if s['id'] == $GOOD][0]['state']")" "the good one stays complete"
assert_eq null "$(json_get "$L" "[s for s in d['snapshots'] if s['id'] == $GOOD][0].get('suspect_reason')")" "and has no reason"
run sg snapshots
assert_rc 0 "snapshots (text)"
assert_contains "$(echo "$OUT" | grep "^ *$BAD ")" "suspect" "the table row shows suspect"
assert_contains "$OUT" "snapshot $BAD is suspect: $REASON" "the reason is printed under the table"

echo "# restore latest takes the good snapshot; the suspect one by id"
rcli flushall >/dev/null
run sg restore latest --json
assert_rc 0 "restore latest"
assert_eq "$GOOD" "$(json_get "$OUT" "d['snapshot_id']")" "restore latest used the good snapshot $GOOD"
assert_eq 2005 "$(json_get "$OUT" "d['restored']")" "its 2005 keys restored"
assert_eq 1526030500000 "$(rcli hget 'igor:jenkins-prod:TEAM-A/SERVICE-500:team-a/service-500' lastPollCycleTimestamp)" "a cursor of the good snapshot is back"

rcli flushall >/dev/null
run sg restore "$BAD" --json
assert_rc 0 "restore of the suspect snapshot by id"
assert_eq "$BAD" "$(json_get "$OUT" "d['snapshot_id']")" "restored snapshot $BAD"
assert_eq 3003 "$(json_get "$OUT" "d['restored']")" "its 3003 keys restored"
assert_eq 1526039999000 "$(rcli hget 'igor:jenkins-prod:TEAM-B/APP:team-b/app' lastPollCycleTimestamp)" "the rebuilt key is back"

echo "# pruning keeps the good snapshot however many suspect ones follow"
run sg snapshot --profile igor --match 'extra:*' --keep 1 --json
assert_rc 0 "snapshot --keep 1"
assert_eq suspect "$(json_get "$OUT" "d['state']")" "still suspect against $GOOD"
LAST=$(json_get "$OUT" "d['snapshot_id']")
run sg snapshots --json
assert_eq "$LAST $GOOD" "$(json_get "$OUT" "' '.join(str(s['id']) for s in d['snapshots'])")" "left: the newest and the good one"

echo "# --suspect-below"
run sg snapshot --profile igor --suspect-below 101
assert_rc 2 "--suspect-below 101 is a usage error"
assert_contains "$ERR" "--suspect-below" "the error names the option"
run sg snapshot --profile igor --suspect-below abc
assert_rc 2 "--suspect-below abc is a usage error"
snapshot_json --suspect-below 0
assert_eq complete "$STATE" "--suspect-below 0: complete however few keys"
ACCEPTED=$SID
assert_eq 3 "$(json_get "$J" "d['profile_keys']")" "3 igor keys"
run sg restore latest --json --dry-run
assert_eq "$ACCEPTED" "$(json_get "$OUT" "d['snapshot_id']")" "the accepted snapshot is the latest good one now"

echo "# the threshold: exactly 50% is good, below is suspect"
rcli flushall >/dev/null
seed_igor 1000
snapshot_json
assert_eq complete "$STATE" "2000 igor keys against 3: complete"
REF=$SID
rcli flushall >/dev/null
seed_igor 500
snapshot_json
assert_eq complete "$STATE" "1000 of 2000 (exactly 50%): complete"
REF=$SID
rcli del 'igor:jenkins-prod:TEAM-A/SERVICE-1:team-a/service-1' >/dev/null
snapshot_json --suspect-below 99
assert_eq complete "$STATE" "999 of 1000 with --suspect-below 99: complete"
REF=$SID
rcli del 'igor:jenkins-prod:TEAM-A/SERVICE-2:team-a/service-2' 'igor:jenkins-prod:TEAM-A/SERVICE-3:team-a/service-3' >/dev/null
run sg snapshot --profile igor --suspect-below 100 --json
assert_rc 0 "--suspect-below 100"
assert_eq suspect "$(json_get "$OUT" "d['state']")" "997 of 999 with --suspect-below 100: suspect"
assert_eq "found 997 igor keys, the last good snapshot $REF had 999 (below 100%)" "$(json_get "$OUT" "d['suspect_reason']")" "reason with the threshold"

echo "# a snapshot without profile is never suspect"
rcli flushall >/dev/null
rcli set k v >/dev/null
run sg snapshot --json
assert_rc 0 "snapshot without profile"
assert_eq complete "$(json_get "$OUT" "d['state']")" "complete"
assert_eq null "$(json_get "$OUT" "d.get('profile_keys')")" "no profile key count"

finish
