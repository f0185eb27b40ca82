#!/usr/bin/env bash
# stormguard store copy: a gate's SQLite store moved into PostgreSQL, and a
# gate on PostgreSQL going on from it without re-announcing anything. On
# SQLite a gate forwards builds (one a Docker tag), holds two in guard
# mode, has one dead (404) and two pending (503); the copy is refused while
# that gate runs, then copies everything needed in one transaction: the
# whole ledger (one build of it only after the source's catch-up), the
# open events with new ids and the ledger's rows pointing at them, the
# Docker tag, the baseline snapshot. A gate on PostgreSQL then suppresses
# replays of forwarded builds (ledger, Docker tag, the baseline's posted
# markers), lists the held events and delivers them on release, delivers
# the pending ones once the sink answers 200. A second copy into the now
# non-empty database is refused (exit 3); a missing source, an unreachable
# destination and bad URLs are errors that never show a password.
source "$SG_TESTS/lib.sh"

start_postgres
start_redis
seed_igor 3 # team-a/service-1..3: cursors, posted markers 101-103 of service-1
run sg snapshot --profile igor --json
assert_rc 0 "a baseline snapshot of Igor's keys in the SQLite store"
SNAP=$(json_get "$OUT" "d['snapshot_id']")
SNAP_KEYS=$(json_get "$OUT" "d['keys']")

cursor() { echo $((1526030000000 + $1 * 1000)); }
# post BODY KIND/STATE MSG: the gate's answer must be that (KIND * for
# any); sets ID
post() {
    gate_post / "$1"
    [ "$HTTP_STATUS" = 200 ] || fail "$3: HTTP $HTTP_STATUS: $REPLY"
    local got
    got=$(json_get "$REPLY" "d['kind'] + '/' + d['state']")
    [ "${2%%/*}" != "*" ] || got="*/${got#*/}"
    assert_eq "$2" "$got" "$3"
    ID=$(json_get "$REPLY" "d['id']")
}
docker_event() { # ACCOUNT REPOSITORY TAG DIGEST-JSON: Igor's postEvent body
    printf '{"details":{"type":"docker","source":"igor"},"content":{"account":"%s","registry":"index.docker.io","repository":"%s","tag":"%s","digest":%s},"artifact":{"type":"docker","name":"%s","version":"%s","reference":"index.docker.io/%s:%s","fileName":"%s:%s","metadata":{"registry":"index.docker.io"},"decorated":false}}' \
        "$1" "$2" "$3" "$4" "$2" "$3" "$2" "$3" "$2" "$3"
}
DIGEST='"sha256:0000000000000000000000000000000000000000000000000000000000000004"'
delivered() { sink_py 'print(len(by_id.get(sys.argv[1], [])))' "$1"; }
is_delivered() { [ "$(delivered "$1")" -ge 1 ]; }
sq() { sqlite3 "$SG_DB" "$1"; }

echo "# a gate on SQLite"
start_sink
start_gate --retry-base-ms 100 --retry-max 1s
post "$(igor_event team-a/service-1 201 $(($(cursor 1) + 1000)))" new/pending "a new build of a known job"
post "$(igor_event team-x/app 1 1526040000000)" unknown/pending "build 1 of an unknown job"
post "$(igor_event team-x/app 2 1526040000000)" new/pending "build 2 of it: new (a job of the ledger)"
FWD_LATE=$ID
post "$(docker_event dockerhub library/app v4 "$DIGEST")" unknown/pending "a Docker tag of an unknown repository"
post "$(igor_event team-a/service-1 102 $(cursor 1))" replay/suppressed "a posted marker: a replay"
wait_for 10 "the four are forwarded" sh -c "[ \$(sqlite3 '$SG_DB' \"SELECT count(*) FROM event WHERE state = 'forwarded'\") = 4 ]"

run sgx guard on --admin "$ADMIN" --reason "before the move"
assert_rc 0 "guard on"
post "$(igor_event team-h/held 1 1526040000000)" unknown/held "guard mode: build 1 of an unknown job is held"
HELD1=$ID
post "$(igor_event team-h/held 2 1526040000000)" "*/held" "and build 2"
HELD2=$ID
run sgx guard off --admin "$ADMIN"
assert_rc 0 "guard off"

sink_set 404
post "$(igor_event team-d/refused 1 1526040000000)" unknown/pending "a build the downstream will refuse"
DEAD=$ID
wait_for 10 "the refused build is dead" sh -c "[ \"\$(sqlite3 '$SG_DB' 'SELECT state FROM event WHERE id = $DEAD')\" = dead ]"
sink_set 503
post "$(igor_event team-a/service-2 301 $(($(cursor 2) + 1000)))" new/pending "a new build while the downstream fails"
PEND1=$ID
post "$(igor_event team-p/pend 1 1526040000000)" unknown/pending "and an unknown one"
PEND2=$ID
tried() { [ "$(sqlite3 "$SG_DB" "SELECT min(attempts) FROM event WHERE id IN ($PEND1, $PEND2)")" -ge 1 ]; }
wait_for 10 "the pending builds are attempted" tried

run sg store copy --to "$PG_URL"
assert_rc 1 "store copy while the SQLite gate runs: exit 1"
assert_contains "$ERR" "in use by another stormguard run (pid $GATE_PID)" "the error names the running gate"
assert_eq 0 "$(psql_q "SELECT count(*) FROM pg_tables WHERE tablename = 'event'")" \
    "nothing was written to PostgreSQL"
stop_gate
assert_eq 0 "$GATE_RC" "the SQLite gate stopped"

# the SQLite gate writes its ledger in bulk, a second or so behind: a crash
# leaves the newest builds out, for the next start's catch-up. As if it
# had crashed before writing build 2 of team-x/app:
sq "DELETE FROM ledger WHERE job = 'team-x/app' AND number = 2;
    UPDATE ledger_mark SET upto = $FWD_LATE - 1"
LEDGER=$(sq "SELECT count(*) FROM ledger")
SRC_MAX=$(sq "SELECT max(id) FROM event")
SRC_EVENTS=$(sq "SELECT count(*) FROM event")
count_state() { sq "SELECT count(*) FROM event WHERE state = '$1'"; }
assert_eq "2 2 1" "$(count_state held) $(count_state pending) $(count_state dead)" \
    "the SQLite store holds 2 held, 2 pending, 1 dead"

echo "# errors"
run sg store copy --db "$TMP/missing.db" --to "$PG_URL"
assert_rc 1 "a missing source: exit 1"
assert_contains "$ERR" "no store to copy at $TMP/missing.db" "the error names the source"
[ ! -e "$TMP/missing.db" ] || fail "the missing source was created"
ok "and it is not created"
FREE=$(_sg_free_port)
run sg store copy --to "postgresql://stormguard:s3cr3t-pw@127.0.0.1:$FREE/stormguard"
assert_rc 1 "an unreachable destination: exit 1"
assert_contains "$ERR" "postgresql://stormguard@127.0.0.1:$FREE/stormguard" "the error names the destination"
assert_not_contains "$OUT$ERR" "s3cr3t-pw" "without its password"
run sg store copy --to "postgresql://stormguard:s3cr3t-pw@127.0.0.1:$FREE/stormguard?sslmode=bogus" --json
assert_rc 1 "a destination URL libpq refuses: exit 1"
assert_not_contains "$OUT$ERR" "s3cr3t-pw" "its error shows no password either, also with --json"
run sg store copy --to "postgresql://stormguard:s3cr3t-pw@127.0.0.1:$FREE/stormguard?x=%zz"
assert_rc 2 "an unparsable destination URL: exit 2"
assert_not_contains "$OUT$ERR" "s3cr3t-pw" "its error shows no password"
run sg store copy --to "$TMP/other.db"
assert_rc 2 "a destination that is no PostgreSQL URL: exit 2"
run sg store copy
assert_rc 2 "no destination: exit 2"
assert_contains "$ERR" "--to" "the error asks for --to"
run sg store copy --to "$PG_URL" --store "postgresql://stormguard@127.0.0.1:$PG_PORT/other"
assert_rc 2 "a source given as a PostgreSQL store: exit 2"
assert_eq "$LEDGER" "$(sq "SELECT count(*) FROM ledger")" "none of them touched the source's ledger"

echo "# the copy"
psql_q "CREATE DATABASE second"
SECOND=postgresql://stormguard@127.0.0.1:$PG_PORT/second
run sg store copy --to "$SECOND"
assert_rc 0 "store copy (text) into a second database"
assert_contains "$OUT" "copied $SG_DB into $SECOND" "it names both stores"
assert_contains "$OUT" "ledger    $((LEDGER + 1)) builds (1 added to the source's ledger first" \
    "the ledger, with the build the catch-up added"
assert_contains "$OUT" "held      2 events" "2 held"
assert_contains "$OUT" "baseline  snapshot $SNAP, as snapshot" "the baseline"

run sg store copy --to "$PG_URL" --json
assert_rc 0 "store copy --json"
assert_eq "$((LEDGER + 1)) 0 2 2 1 1" \
    "$(json_get "$OUT" "'%d %d %d %d %d %d' % (d['ledger'], d['caught_up'], d['held'], d['pending'], d['dead'], d['docker'])")" \
    "the whole ledger (caught up by the first copy already), 2 held, 2 pending, 1 dead, 1 Docker event"
assert_eq "$SNAP $SNAP_KEYS" "$(json_get "$OUT" "'%d %d' % (d['snapshot']['from'], d['snapshot']['keys'])")" \
    "the baseline snapshot with its keys"
FIRST=$(json_get "$OUT" "d['first_id']")
assert_eq "$((SRC_MAX + 1)) $((SRC_MAX + 6))" "$FIRST $(json_get "$OUT" "d['last_id']")" \
    "the 6 events get new ids, above the source's"
assert_eq "$((LEDGER + 1))" "$(sq "SELECT count(*) FROM ledger")" \
    "the source's ledger got its missing build"
assert_eq "$SRC_EVENTS $SRC_MAX" "$(sq "SELECT count(*) FROM event") $(sq "SELECT upto FROM ledger_mark")" \
    "the source's journal is unchanged, its mark caught up"

echo "# what PostgreSQL holds"
assert_eq "$((LEDGER + 1))" "$(psql_q "SELECT count(*) FROM ledger")" "the ledger's rows"
# the SQLite rows, with the ids they must have in PostgreSQL
sq "SELECT source, job, number, accepted_at, event_id FROM ledger ORDER BY 1, 2, 3" >"$TMP/src.ledger"
sq "SELECT id FROM event WHERE state IN ('held', 'pending', 'dead') OR (tag IS NOT NULL AND kind IN ('new', 'unknown')) ORDER BY id" |
    awk -v f="$FIRST" '{ print $1 "|" f + NR - 1 }' >"$TMP/ids.map"
awk -F'|' 'NR == FNR { m[$1] = $2; next } { if ($5 in m) $5 = m[$5]; print }' OFS='|' \
    "$TMP/ids.map" "$TMP/src.ledger" >"$TMP/want.ledger"
psql_q "SELECT source, job, number, accepted_at, event_id FROM ledger ORDER BY 1, 2, 3" >"$TMP/pg.ledger"
assert_eq "" "$(diff "$TMP/want.ledger" "$TMP/pg.ledger")" \
    "every ledger row as it is, a copied event's row naming its new id"
COLS="received_at, source, job, number, build_ts, kind, reason, state, method, encode(path, 'hex'), encode(headers, 'hex'), encode(body, 'hex'), attempts, next_attempt_at, encode(last_error, 'hex'), done_at, qgen, would, tag, digest"
SQCOLS="received_at, source, job, number, build_ts, kind, reason, state, method, lower(hex(path)), lower(hex(headers)), lower(hex(body)), attempts, next_attempt_at, lower(hex(last_error)), done_at, qgen, would, tag, digest"
assert_eq "$(sq "SELECT $SQCOLS FROM event WHERE state IN ('held', 'pending', 'dead') OR (tag IS NOT NULL AND kind IN ('new', 'unknown')) ORDER BY id")" \
    "$(psql_q "SELECT $COLS FROM event ORDER BY id")" "every column of the copied events"
assert_eq "$((SRC_MAX + 6))" "$(psql_q "SELECT upto FROM ledger_mark")" "the ledger's mark at the last copied event"
assert_eq 1 "$(psql_q "SELECT count(*) FROM audit WHERE action = 'copy'")" "the copy is in the audit log"

echo "# a second copy into the same database"
run sg store copy --to "$PG_URL"
assert_rc 3 "refused: exit 3"
assert_contains "$ERR" "the store $PG_URL already holds 6 events and $((LEDGER + 1)) builds" \
    "the refusal names the store and what it holds"
assert_eq 6 "$(psql_q "SELECT count(*) FROM event")" "nothing added"

echo "# a gate on PostgreSQL"
sink_set 200
: >"$SINK_LOG" # what the SQLite gate delivered is not counted below
start_gate --store "$PG_URL" --retry-base-ms 100 --retry-max 1s
NEW_PEND1=$(awk -F'|' -v id="$PEND1" '$1 == id { print $2 }' "$TMP/ids.map")
NEW_PEND2=$(awk -F'|' -v id="$PEND2" '$1 == id { print $2 }' "$TMP/ids.map")
wait_for 15 "the first pending build is delivered" is_delivered "$NEW_PEND1"
wait_for 15 "the second pending build is delivered" is_delivered "$NEW_PEND2"
ok "the pending builds are delivered once the sink answers 200, under their new ids"
post "$(igor_event team-a/service-1 201 $(($(cursor 1) + 1000)))" replay/suppressed \
    "a forwarded build posted again: a replay"
post "$(igor_event team-x/app 2 1526040000000)" replay/suppressed \
    "the build only the catch-up put in the ledger: a replay"
post "$(docker_event dockerhub library/app v4 null)" replay/suppressed \
    "the Docker tag again without a digest: a replay, by the ledger's tags"
post "$(igor_event team-a/service-1 103 $(cursor 1))" replay/suppressed \
    "a posted marker of the copied baseline: a replay"
post "$(igor_event team-a/service-3 401 $(($(cursor 3) + 1000)))" new/pending \
    "a new build of a job the baseline knows: new"

run sgx held --store "$PG_URL" --admin "$ADMIN" --json
assert_rc 0 "held"
assert_eq "2 team-h/held" "$(json_get "$OUT" "'%d %s' % (d['held'], d['jobs'][0]['job'])")" \
    "held lists the two held builds"
run sgx release --store "$PG_URL" --admin "$ADMIN" --all --json
assert_rc 0 "release --all"
assert_eq 2 "$(json_get "$OUT" "d['released']")" "both released"
NEW_HELD1=$(awk -F'|' -v id="$HELD1" '$1 == id { print $2 }' "$TMP/ids.map")
NEW_HELD2=$(awk -F'|' -v id="$HELD2" '$1 == id { print $2 }' "$TMP/ids.map")
wait_for 15 "the released builds are delivered" sh -c \
    "[ \$(curl -sf http://$ADMIN/v1/status | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"pending\"])') = 0 ]"
assert_eq "1 1" "$(delivered "$NEW_HELD1") $(delivered "$NEW_HELD2")" "each released build delivered once"
NEW_DEAD=$(awk -F'|' -v id="$DEAD" '$1 == id { print $2 }' "$TMP/ids.map")
assert_eq 0 "$(delivered "$NEW_DEAD")" "the dead build is not delivered"
run sgx events --admin "$ADMIN" --state dead --json
assert_eq "$NEW_DEAD" "$(json_get "$OUT" "d['events'][0]['id']")" "it is listed dead"
assert_eq "team-a/service-2:301 team-a/service-3:401 team-h/held:1 team-h/held:2 team-p/pend:1" \
    "$(sink_py 'print(" ".join(sorted("%s:%d" % (p["name"], p["lastBuild"]["number"]) for p in (json.loads(r["body"])["content"]["project"] for r in ok))))')" \
    "the sink got the pending, the released and the new build, nothing the SQLite gate forwarded"
assert_eq "$((LEDGER + 2))" "$(json_get "$(gate_status)" "d['ledger']")" \
    "the gate's ledger: the copied builds and the new one"
stop_gate
assert_eq 0 "$GATE_RC" "the gate on PostgreSQL stopped"
finish
