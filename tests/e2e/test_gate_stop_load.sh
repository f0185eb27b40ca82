#!/usr/bin/env bash
# Stopping under load (README, Guarantees): a poller posts a steady stream of
# builds while the downstream is slow, so deliveries are in flight at every
# moment. SIGTERM lets them finish and records their results before the
# gate exits: after the restart no event reaches the downstream twice. A
# kill -9 may deliver again what was in flight or done but not yet recorded
# (the same event id), never a build as two events; in both cases every
# build answered 200 is delivered.
source "$SG_TESTS/lib.sh"

N=1600
INFLIGHT=16

start_sink
sink_set 200 40 # each delivery takes 40 ms: several are in flight at any time
start_gate --max-inflight $INFLIGHT

"$PY" "$SG_TESTS/poster.py" --port "$GATE_PORT" --count $N --rate 250 --threads 4 \
    --deadline 100 --out "$TMP/posts.tsv" </dev/null >"$TMP/poster.out" 2>&1 &
POSTER=$!
bg_track $POSTER

n200() { awk -F'\t' '$2 == 200' "$TMP/posts.tsv" | wc -l; }
accepted() { [ "$(n200)" -ge "$1" ]; }
pending0() { [ "$(json_get "$(gate_status)" "d['pending']")" = 0 ]; }
redelivered() { sink_py 'print(sum(len(v) - 1 for v in by_id.values()))'; }

wait_for 30 "500 events accepted" accepted 500
INFL=$(json_get "$(gate_status)" "d['downstream']['inflight']")
echo "# SIGTERM after $(n200) events answered 200, $INFL deliveries in flight"
[ "$INFL" -ge 1 ] || fail "no delivery in flight at the SIGTERM: the test proves nothing"
stop_gate TERM
assert_eq 0 "$GATE_RC" "SIGTERM under load: exit 0"
assert_contains "$(cat "$GATE_LOG")" "deliveries, at most" "the stop says it finishes the deliveries in flight"
# the events journaled before the stop: every delivery of theirs is done by
# the time each has reached the sink once after the restart
UPTO=$(awk -F'\t' '$2 == 200' "$TMP/posts.tsv" | "$PY" -c '
import json, sys
print(max(json.loads(l.split("\t", 2)[2])["id"] for l in sys.stdin))')
restart_gate
firsts_delivered() {
    sink_py '
upto, missing = int(sys.argv[1]), []
for line in open(sys.argv[2]):
    i, code, reply = line.rstrip("\n").split("\t", 2)
    if code == "200":
        a = json.loads(reply)
        if a["kind"] != "replay" and a["id"] <= upto and str(a["id"]) not in by_id:
            missing.append(a["id"])
sys.exit(1 if missing else 0)' "$UPTO" "$TMP/posts.tsv"
}
wait_for 30 "the events journaled before the SIGTERM delivered" firsts_delivered
assert_eq 0 "$(sink_py 'print(sum(len(v) - 1 for k, v in by_id.items() if int(k) <= int(sys.argv[1])))' "$UPTO")" \
    "SIGTERM and restart: none of the $UPTO events journaled before it reached the sink twice"

wait_for 30 "1000 events accepted" accepted 1000
BEFORE=$(redelivered)
INFL=$(json_get "$(gate_status)" "d['downstream']['inflight']")
echo "# kill -9 after $(n200) events answered 200, $INFL deliveries in flight"
[ "$INFL" -ge 1 ] || fail "no delivery in flight at the kill -9: the test proves nothing"
kill_gate
restart_gate
wait $POSTER || fail "the poster did not get every event answered 200: $(cat "$TMP/poster.out")"
ok "every one of the $N events was answered 200 in the end"
wait_for 30 "the backlog delivered after the kill" pending0
sleep 0.3
AGAIN=$(($(redelivered) - BEFORE))
echo "# kill -9: $AGAIN events reached the sink a second time"
# the crash window: deliveries in flight, and those done whose result was
# not yet committed (the journal's next group commit, a few ms)
assert_le "$AGAIN" $((2 * INFLIGHT)) "kill -9: re-deliveries at most twice --max-inflight ($INFLIGHT)"

admin_get "/v1/events?limit=10000"
echo "$REPLY" >"$TMP/events.json"
sink_py '
tmp, n = sys.argv[1], int(sys.argv[2])
events = {e["id"]: e for e in json.load(open(tmp + "/events.json"))["events"]}
answers = {}
for line in open(tmp + "/posts.tsv"):
    i, code, reply = line.rstrip("\n").split("\t", 2)
    if code == "200":
        answers.setdefault(int(i), []).append(json.loads(reply))
errors = []
builds = {}  # (job, number) -> event ids delivered
for r in ok:
    b = json.loads(r["body"])["content"]["project"]
    builds.setdefault((b["name"], b["lastBuild"]["number"]), set()).add(r["event_id"])
# the events of the journal by build: a post the kill -9 cut off after its
# commit and before its answer was journaled (and forwarded) but never
# answered; the retry of the poster is then answered as the replay it is
journaled = {}
for e in events.values():
    if e.get("job"):
        journaled.setdefault((e["job"], e["number"]), []).append(e)
for i in range(n):
    key = ("team-l/svc-%d" % (i % 50), 1000 + i // 50)
    firsts = [a for a in answers.get(i, []) if a["kind"] != "replay"]
    if not firsts and answers.get(i):
        firsts = [e for e in journaled.get(key, []) if e["kind"] != "replay"]
    if len(firsts) != 1:
        errors.append("event %d accepted as a build %d times: %r; journaled: %r"
                      % (i, len(firsts), answers.get(i), journaled.get(key)))
        continue
    id_ = firsts[0]["id"]
    if events.get(id_, {}).get("state") != "forwarded":
        errors.append("event %d (id %d): journal row %r" % (i, id_, events.get(id_)))
    if builds.get(key) != {str(id_)}:
        errors.append("build %r reached the sink as %r, accepted as %d" % (key, builds.get(key), id_))
print("\n".join(errors[:20]) or "ok")
' "$TMP" $N >"$TMP/verify.out"
assert_eq ok "$(cat "$TMP/verify.out")" "every build accepted once, journaled as forwarded, delivered as that one event"
stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM: exit 0"
finish
