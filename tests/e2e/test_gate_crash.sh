#!/usr/bin/env bash
# kill -9 of stormguard run in the middle of a stream of posts, then a
# restart on the same store (DESIGN.md, Guarantees): every event answered 200
# is still journaled and reaches the downstream; no build is lost (the poster
# retries until it gets a 200, as Igor does); a build reaches the downstream
# twice only as a re-delivery of the same event (same X-Stormguard-Event-Id),
# never as two events.
source "$SG_TESTS/lib.sh"

N=300
JOBS=20

start_redis
seed_igor $JOBS
run sg snapshot --profile igor
assert_rc 0 "snapshot --profile igor of $JOBS jobs"

start_sink
sink_set 200 30 # slow-ish: deliveries are in flight when the gate dies
start_gate

stream_start $N $JOBS 3
wait_for 30 "the gate accepted 120 events" stream_has_accepted 120
ST=$(gate_status || echo '{}')
kill_gate
BEFORE=$(stream_accepted)
echo "# kill -9 after $BEFORE events answered 200; in flight then: $(json_get "$ST" "d.get('downstream', {}).get('inflight')"), pending $(json_get "$ST" "d.get('pending')")"
sleep 0.5
restart_gate
grep -q "events pending" "$GATE_LOG" && echo "# $(grep -o 'ledger [0-9]* builds of [0-9]* jobs, [0-9]* events pending' "$GATE_LOG")"

stream_finish 60
AFTER_KILL=$(awk -F'\t' '$2 != 200' "$TMP/posts.tsv" | wc -l)
echo "# $AFTER_KILL attempts were not answered 200 (the gate was down)"
stream_verify >"$TMP/verify.out"
assert_eq ok "$(cat "$TMP/verify.out")" "all $N builds accepted, journaled, delivered; duplicates only as re-deliveries of one event id"

ST=$(gate_status)
assert_eq 0 "$(json_get "$ST" "sum(v.get('dead', 0) for v in d['counts'].values())")" "no event is dead"
assert_eq "$N" "$(json_get "$ST" "d['ledger']")" "the ledger holds the $N builds"

echo "# a second kill -9 with deliveries pending, the sink failing"
sink_set 503
for i in 1 2 3; do
    gate_post / "$(igor_event team-a/service-1 $((5000 + i)) 1526040000000)"
    assert_eq 200 "$HTTP_STATUS" "post $i while the sink fails"
done
head -c 100000 /dev/urandom >"$TMP/binary"
BIN_SHA=$(sha256sum "$TMP/binary" | cut -d' ' -f1)
_sg_curl "$GATE_URL/artifacts/upload?name=a%20b&n=1" -X PUT -H 'Content-Type: application/octet-stream' \
    --data-binary "@$TMP/binary"
assert_eq 200 "$HTTP_STATUS" "a 100 KB binary PUT (pass-through) while the sink fails"
BIN_ID=$(json_get "$REPLY" "d['id']")
has_failures() { sink_py 'print(len(recs) - len(ok))' | { read -r x; [ "$x" -ge 1 ]; }; }
wait_for 10 "the sink refused a delivery" has_failures
kill_gate
sink_set 200
restart_gate
wait_for 15 "the 4 pending events delivered after the restart" gate_pending0
sink_py '
want = set(str(x) for x in sys.argv[1:])
got = [r for r in ok if r["path"] == "/" and json.loads(r["body"])["content"]["project"]["lastBuild"]["number"] > 5000]
ids = set(r["event_id"] for r in got)
print("ok" if len(got) == 3 and len(ids) == 3 else "got %r" % [(r["event_id"], r["body"][-60:]) for r in got])
' >"$TMP/verify2.out"
assert_eq ok "$(cat "$TMP/verify2.out")" "each reached the sink once after the restart"
assert_eq "1 PUT /artifacts/upload?name=a%20b&n=1 100000 $BIN_SHA application/octet-stream" \
    "$(sink_py 'r = by_id.get(sys.argv[1], []); print(len(r), *(r[0][k] for k in ("method", "path", "len", "sha256")), r[0]["headers"].get("content-type"))' "$BIN_ID")" \
    "the binary PUT reached the sink once after the restart: method, path, query, body and type intact"

echo "# builds accepted just before a kill -9 are known after the restart"
# on SQLite the journal writes the ledger about once a second: these are in
# its memory only when the gate dies; the restart adds them from the journal
# (posted in one burst: the kill must come within that second)
for n in 1 2 3 4 5; do igor_event team-a/service-$n 9000 1526050000000 >"$TMP/late$n.json"; done
"$PY" -c '
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
for n in range(1, 6):
    c.request("POST", "/", open("%s/late%d.json" % (sys.argv[2], n), "rb").read(),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    print(r.status, json.loads(r.read())["kind"])
' "$GATE_PORT" "$TMP" >"$TMP/late.out"
kill_gate
assert_eq "$(printf '200 new\n%.0s' 1 2 3 4 5)" "$(cat "$TMP/late.out")" "the 5 late builds accepted as new"
restart_gate
if [ "${SG_STORE_BACKEND:-}" = pg ]; then
    # replicas share the ledger: each build went into it with its event
    assert_not_contains "$(cat "$GATE_LOG")" "builds to the ledger" \
        "on PostgreSQL the kill kept no build out of the ledger"
else
    assert_contains "$(cat "$GATE_LOG")" "added 5 builds to the ledger" \
        "the restart says it added the 5 builds the kill kept out of the ledger"
fi
for n in 1 2 3 4 5; do
    gate_post / "$(igor_event team-a/service-$n 9000 1526050000000)"
    assert_eq replay "$(json_get "$REPLY" "d['kind']")" "late build $n posted again: a replay"
done
delivered_late() { [ "$(sink_py 'print(sum(1 for r in ok if "\"number\":9000" in r["body"]))')" -ge 5 ]; }
wait_for 10 "the 5 late builds delivered" delivered_late
sleep 0.5
assert_eq 5 "$(sink_py 'print(len({r["event_id"] for r in ok if "\"number\":9000" in r["body"]}))')" \
    "each late build reached the sink as one event"

stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM: exit 0"
finish
