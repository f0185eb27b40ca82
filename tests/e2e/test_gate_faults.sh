#!/usr/bin/env bash
# The downstream fails under stormguard run (DESIGN.md, Guarantees: a
# forwarded event the downstream did not accept is retried with backoff until
# accepted or declared dead after a configured age; never dropped silently):
# a 503 phase is retried with backoff (a job's later builds waiting for its
# first), survives a SIGTERM and restart, and everything is delivered once,
# in order per job, after recovery, with status and /readyz (degraded, still
# ready) reporting the failure meanwhile; a 404 is final (dead at once,
# last_error names it); a 429 waits its Retry-After; an attempt slower than --forward-timeout is
# retried; with --forward-max-age 2s an unreachable downstream makes events
# dead, reported by status, /v1/events, /metrics, the log and `stormguard
# events`, and a restart does not resurrect them.
source "$SG_TESTS/lib.sh"

start_sink
start_gate --retry-base-ms 100 --retry-max 1s --forward-timeout 1s

echo "# the downstream answers 503 for a while"
sink_set 503
: >"$TMP/ids"   # every event of this phase
: >"$TMP/heads" # those first in their job's delivery order
for i in 1 2 3 4 5; do
    gate_post / "$(igor_event team-x/job-$i $i 1526040000000)"
    assert_eq 200 "$HTTP_STATUS" "event $i accepted while the downstream fails"
    json_get "$REPLY" "d['id']" | tee -a "$TMP/heads" >>"$TMP/ids"
done
gate_post '/webhooks/docker?tag=v1' '{"details":{"type":"docker"},"content":{"tag":"v1"}}'
assert_eq 200 "$HTTP_STATUS" "a pass-through event accepted too"
json_get "$REPLY" "d['id']" | tee -a "$TMP/heads" >>"$TMP/ids"
for n in 1 2 3 4; do
    gate_post / "$(igor_event team-x/ordered $n $((1526040000000 + n)))"
    assert_eq 200 "$HTTP_STATUS" "build $n of team-x/ordered accepted"
    json_get "$REPLY" "d['id']" >>"$TMP/ids"
    [ $n != 1 ] || json_get "$REPLY" "d['id']" >>"$TMP/heads"
done
NIDS=$(wc -l <"$TMP/ids")

has_id() { [ "$(sink_py 'print(len(by_id.get(sys.argv[1], [])))' "$1")" -ge 1 ]; }
unhealthy() { [ "$(json_get "$(gate_status)" "d['downstream']['healthy']")" = false ]; }
wait_for 10 "status reports the downstream unhealthy" unhealthy
ok "status: downstream healthy false"
ST=$(gate_status)
assert_contains "$(json_get "$ST" "d['downstream']['last_error']")" 503 "status: last_error names the 503"
assert_eq "$NIDS" "$(json_get "$ST" "d['pending']")" "status: $NIDS pending"
admin_get /readyz
assert_eq 200 "$HTTP_STATUS" "/readyz answers 200 while the downstream fails: the gate still journals"
assert_contains "$(json_get "$REPLY" "d['degraded']")" "downstream" "/readyz lists the downstream as degraded"
admin_get /healthz
assert_eq 200 "$HTTP_STATUS" "/healthz still answers 200 (the process is alive)"

# retried with backoff: several attempts per event, spaced >= base/2 and
# growing, capped near --retry-max
retried() { sink_py 'print(min(sum(r["event_id"] == i for r in recs) for i in sys.argv[1:]))' $(cat "$TMP/heads") |
    { read -r n; [ "$n" -ge 3 ]; }; }
wait_for 10 "every event at the head of its job attempted at least 3 times" retried
sleep 2.5 # long enough to reach the 1 s cap
sink_py '
errors = []
for i in sys.argv[1:]:
    ts = [r["t"] for r in recs if r["event_id"] == i]
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    if min(gaps) < 0.045:
        errors.append("event %s retried after %.3f s (< base/2)" % (i, min(gaps)))
    if max(gaps) > 1.5:
        errors.append("event %s waited %.3f s between attempts (> retry-max)" % (i, max(gaps)))
    if len(ts) > 25:
        errors.append("event %s attempted %d times in ~4 s: no backoff" % (i, len(ts)))
ordered = set(sys.argv[1:])
for r in recs:
    if r["event_id"] not in ordered:
        errors.append("event %s attempted before the one ahead of it in its job" % r["event_id"])
        break
print("\n".join(errors) or "ok")
' $(cat "$TMP/heads") >"$TMP/backoff.out"
assert_eq ok "$(cat "$TMP/backoff.out")" "retries back off (>= 50 ms, <= ~1 s apart); a job's later builds wait for its first"

echo "# SIGTERM while deliveries are being retried: prompt, and they resume"
T0=$(date +%s%N)
stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM with $NIDS events pending: exit 0"
assert_le $((($(date +%s%N) - T0) / 1000000)) 3000 "within 3 s"
restart_gate
ST=$(gate_status)
assert_eq "$NIDS" "$(json_get "$ST" "d['pending']")" "after the restart the $NIDS are still pending"

sink_set 200
healthy_idle() {
    local st
    st=$(gate_status)
    [ "$(json_get "$st" "d['downstream']['healthy']")" = true ] && [ "$(json_get "$st" "d['pending']")" = 0 ]
}
wait_for 10 "everything delivered after the downstream recovers" healthy_idle
ok "after recovery: healthy, nothing pending"
admin_get /readyz
assert_eq 200 "$HTTP_STATUS" "/readyz answers 200 again"
sleep 0.5
sink_py '
ids = sys.argv[1:]
bad = [i for i in ids if len(by_id.get(i, [])) != 1]
extra = [r["event_id"] for r in ok if r["event_id"] not in ids]
print("ok" if not bad and not extra else "delivered != once: %r, extra %r" % (bad, extra))
' $(cat "$TMP/ids") >"$TMP/once.out"
assert_eq ok "$(cat "$TMP/once.out")" "each of the $NIDS events delivered exactly once"
assert_eq "$(sed -n 7,10p "$TMP/ids" | tr '\n' ' ')" \
    "$(sink_py 'print(" ".join(r["event_id"] for r in ok if "team-x/ordered" in r["body"]), end=" ")')" \
    "team-x/ordered's builds delivered in the order they arrived"
assert_eq "['/webhooks/docker?tag=v1']" "$(sink_py 'print([r["path"] for r in ok if r["path"] != "/"])')" \
    "the pass-through event kept its path and query through the retries"
admin_get "/v1/events?state=forwarded"
assert_eq "$NIDS" "$(json_get "$REPLY" "len(d['events'])")" "/v1/events: the $NIDS are forwarded"
assert_eq true "$(json_get "$REPLY" "all(e['attempts'] >= 2 for e in d['events'] if str(e['id']) in '$(tr '
' ' ' <"$TMP/heads")'.split())")" \
    "/v1/events: the heads took several attempts"

echo "# a 404 is final: dead at once"
sink_set 404
gate_post / "$(igor_event team-x/refused 7 1526040000000)"
assert_eq 200 "$HTTP_STATUS" "event accepted"
DEAD_ID=$(json_get "$REPLY" "d['id']")
dead_listed() { admin_get "/v1/events?state=dead"; [ "$(json_get "$REPLY" "len(d['events'])")" = "$1" ]; }
wait_for 10 "event $DEAD_ID listed dead" dead_listed 1
admin_get "/v1/events?state=dead"
assert_eq "$DEAD_ID" "$(json_get "$REPLY" "d['events'][0]['id']")" "/v1/events?state=dead lists it"
assert_contains "$(json_get "$REPLY" "d['events'][0].get('last_error')")" 404 "its last_error names the 404"
sleep 1
assert_eq 1 "$(sink_py 'print(len([r for r in recs if r["event_id"] == sys.argv[1]]))' "$DEAD_ID")" \
    "a 404 is not retried: one attempt"
run sgx events --admin "$ADMIN" --state dead --json
assert_rc 0 "stormguard events --state dead"
assert_eq "$DEAD_ID" "$(json_get "$OUT" "d['events'][0]['id']")" "stormguard events --state dead lists it"
run sgx events --admin "$ADMIN" --state dead
assert_contains "$OUT" "team-x/refused" "stormguard events (text) names the job"
sink_set 200

echo "# 429 with Retry-After: 2 is retried, not before 2 s"
: >"$SINK_LOG"
sink_set 429 0 2
gate_post / "$(igor_event team-x/throttled 1 1526040000000)"
TH_ID=$(json_get "$REPLY" "d['id']")
two_attempts() { [ "$(sink_py 'print(len(recs))')" -ge 2 ]; }
wait_for 10 "a second attempt after the 429" two_attempts
sink_set 200
wait_for 10 "the throttled event delivered" has_id "$TH_ID"
assert_eq ok "$(sink_py '
ts = [r["t"] for r in recs]
print("ok" if recs[0]["status"] == 429 and min(b - a for a, b in zip(ts, ts[1:])) >= 1.9
      else [(r["status"], r["t"] - ts[0]) for r in recs])')" "retries after a 429 wait the Retry-After (2 s)"
admin_get "/v1/events?job=team-x/throttled"
assert_eq forwarded "$(json_get "$REPLY" "d['events'][0]['state']")" "a 429 is not final: forwarded"

echo "# a downstream slower than --forward-timeout 1s: retried until one attempt is answered in time"
: >"$SINK_LOG"
sink_set 200 2500
gate_post / "$(igor_event team-x/slow 1 1526040000000)"
SLOW_ID=$(json_get "$REPLY" "d['id']")
wait_for 10 "the gate notices the timeout" unhealthy
assert_contains "$(json_get "$(gate_status)" "d['downstream']['last_error']")" "timed out" \
    "status: last_error says the attempt timed out"
sink_set 200
slow_done() { admin_get "/v1/events?job=team-x/slow"; [ "$(json_get "$REPLY" "d['events'][0]['state']")" = forwarded ]; }
wait_for 10 "the slow event forwarded" slow_done
ok "forwarded once the downstream answers in time"
sleep 0.5
assert_eq "[]" "$(sink_py 'print([r["event_id"] for r in recs if r["event_id"] != sys.argv[1]])' "$SLOW_ID")" \
    "every attempt the sink saw carried the same event id"

echo "# --forward-max-age 2s with the downstream unreachable"
stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM: exit 0"
DOWN=$(_sg_free_port) # nothing listens there
new_store aged
start_gate --downstream "http://127.0.0.1:$DOWN" --forward-max-age 2s \
    --retry-base-ms 100 --retry-max 1s
for i in 1 2 3; do
    gate_post / "$(igor_event team-y/job-$i $i 1526040000000)"
    assert_eq 200 "$HTTP_STATUS" "event $i accepted with the downstream down"
done
wait_for 15 "the 3 events dead after 2 s" dead_listed 3
ok "the 3 events are dead (max age 2 s)"
admin_get "/v1/events?state=dead"
assert_eq true "$(json_get "$REPLY" "all(e['attempts'] >= 2 for e in d['events'])")" \
    "they were retried before being declared dead"
assert_contains "$(json_get "$REPLY" "d['events'][0].get('last_error')")" "gave up" \
    "last_error says it gave up"
ST=$(gate_status)
assert_eq 3 "$(json_get "$ST" "d['counts']['unknown'].get('dead', 0)")" "status counts 3 dead"
assert_eq 0 "$(json_get "$ST" "d['pending']")" "and nothing pending"
assert_eq false "$(json_get "$ST" "d['downstream']['healthy']")" "downstream unhealthy"
assert_ne "" "$(json_get "$ST" "d['downstream']['last_error'] or ''")" "with its last error"
run curl -s "http://$ADMIN/metrics"
assert_contains "$OUT" 'stormguard_events{kind="unknown",state="dead"} 3' "/metrics counts the dead events"
assert_contains "$(cat "$GATE_LOG")" "is dead after" "the log reports each dead event"
run sgx status --admin "$ADMIN"
assert_rc 0 "stormguard status"
assert_contains "$OUT" "FAILING" "stormguard status shows the downstream failing"

echo "# dead events stay dead across a restart"
stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM: exit 0"
GATE_ARGS=(--forward-max-age 2s) # same store, now a working downstream
restart_gate
sleep 1
assert_eq 0 "$(sink_py 'print(len([r for r in recs if "team-y" in r["body"]]))')" \
    "a restart does not resurrect dead events"
ST=$(gate_status)
assert_eq 3 "$(json_get "$ST" "d['counts']['unknown'].get('dead', 0)")" "status after restart: still 3 dead"

stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM: exit 0"
finish
