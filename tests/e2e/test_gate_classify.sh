#!/usr/bin/env bash
# stormguard run classifies against the latest igor snapshot and its ledger
# (DOMAIN.md section 4): replays (posted marker, start at or before the
# job's cursor, Travis number at or below the last completed, already in the
# ledger) are answered 200 "suppressed" and never reach the downstream; new
# builds, unknown jobs and non-build events reach it exactly once, on the
# same method, path and query, body untouched, with X-Stormguard-Event-Id
# equal to the id of the answer, and only the allowed headers. The same
# build posted 10 times at once is new once. Out-of-order Jenkins
# completions are both new; a Notification plugin build's COMPLETED and
# FINALIZED go once, and with --notification-source its folder job is
# matched to Igor's. A newer snapshot becomes the baseline without a
# restart; the ledger survives restarts.
source "$SG_TESTS/lib.sh"

start_redis
seed_igor 20
pipe_py "[['SET', 'igor:builds:completed:travis-ci:ORG/REPO:org/repo', '42']]"
run sg snapshot --profile igor --json
assert_rc 0 "snapshot --profile igor of 20 Jenkins jobs and a Travis job"
SNAP1=$(json_get "$OUT" "d['snapshot_id']")

start_sink
start_gate
ST=$(gate_status)
assert_eq "$SNAP1" "$(json_get "$ST" "d['snapshot']['id']")" "the gate classifies against snapshot $SNAP1"
assert_eq 21 "$(json_get "$ST" "d['snapshot']['jobs']")" "with its 21 jobs"

# cursor of team-a/service-$i (seed_igor); posted markers 100+i .. 102+i
cursor() { echo $((1526030000000 + $1 * 1000)); }

: >"$TMP/posts.tsv"
# expect PATH BODY KIND STATE MSG [curl args...]: posts, checks the answer,
# records it.
expect() {
    gate_post "$1" "$2" "${@:6}"
    [ "$HTTP_STATUS" = 200 ] || fail "$5: expected HTTP 200, got $HTTP_STATUS: $REPLY"
    local id kind state
    id=$(json_get "$REPLY" "d['id']")
    kind=$(json_get "$REPLY" "d['kind']")
    state=$(json_get "$REPLY" "d['state']")
    [ "$kind/$state" = "$3/$4" ] || fail "$5: expected $3/$4, got $kind/$state: $REPLY"
    ok "$5: $kind/$state (event $id)"
    printf '%s' "$2" >"$TMP/body.$id"
    printf '%s\t%s\t%s\n' "$id" "$kind" "$1" >>"$TMP/posts.tsv"
    LAST_ID=$id
}

echo "# replays"
expect / "$(igor_event team-a/service-1 102 $(($(cursor 1) + 60000)))" replay suppressed \
    "posted marker (build 102 of service-1), started after the cursor"
expect / "$(igor_event team-a/service-3 105 $(($(cursor 3) - 5000)))" replay suppressed \
    "posted marker (build 105 of service-3)"
expect / "$(igor_event team-a/service-1 90 "$(cursor 1)")" replay suppressed \
    "not posted, started exactly at the cursor"
expect / "$(igor_event team-a/service-4 60 $(($(cursor 4) - 3600000)))" replay suppressed \
    "not posted, started an hour before the cursor"
expect / "$(igor_event org/repo 42 1526040000000 travis-ci travis)" replay suppressed \
    "Travis build 42 = last completed"
expect / "$(igor_event org/repo 17 1526040000000 travis-ci travis)" replay suppressed \
    "Travis build 17 < last completed"

echo "# new builds and unknown jobs"
expect / "$(igor_event team-a/service-1 200 $(($(cursor 1) + 1)))" new pending \
    "service-1 build 200, started 1 ms after the cursor"
NEW200=$LAST_ID
expect / "$(igor_event team-a/service-5 108 $(($(cursor 5) + 30000)))" new pending \
    "service-5 build 108 (just past its posted markers 105-107), after the cursor"
expect / "$(igor_event org/repo 43 1526040000000 travis-ci travis)" new pending \
    "Travis build 43 > last completed"
expect / "$(igor_event team-z/brand-new 1 1526040000000)" unknown pending \
    "a job the snapshot does not know"
expect / "$(igor_event team-a/service-1 300 1526040000000 jenkins-other)" unknown pending \
    "a known job name on another master is another job"

echo "# the same build twice"
expect / "$(igor_event team-a/service-1 200 $(($(cursor 1) + 1)))" replay suppressed \
    "service-1 build 200 again: a replay (ledger)"
expect / "$(igor_event team-z/brand-new 1 1526040000000)" replay suppressed \
    "the unknown job's build again: a replay"
expect / "$(igor_event team-z/brand-new 2 1526040100000)" new pending \
    "the next build of the formerly unknown job: new (the ledger knows the job)"

echo "# the same build posted 10 times at once: one new, 9 replays"
igor_event team-a/service-7 300 $(($(cursor 7) + 9000)) >"$TMP/dup.body"
DUPS=()
for i in $(seq 1 10); do
    curl -s -o "$TMP/dup.$i" --max-time 15 -X POST -H 'Content-Type: application/json' \
        --data-binary "@$TMP/dup.body" "$GATE_URL/" &
    DUPS+=($!)
done
wait "${DUPS[@]}"
for i in $(seq 1 10); do
    id=$(json_get "$(cat "$TMP/dup.$i")" "d['id']")
    kind=$(json_get "$(cat "$TMP/dup.$i")" "d['kind']")
    cp "$TMP/dup.body" "$TMP/body.$id"
    printf '%s\t%s\t%s\n' "$id" "$kind" / >>"$TMP/posts.tsv"
    echo "$kind"
done | sort | uniq -c | tr -s ' ' >"$TMP/dup.kinds"
assert_eq "$(printf ' 1 new\n 9 replay')" "$(cat "$TMP/dup.kinds")" "10 concurrent posts of one build: 1 new, 9 replay"

echo "# out-of-order completions: long build 110 finishes after short 111"
expect / "$(igor_event team-a/service-2 111 $(($(cursor 2) + 2000)))" new pending \
    "service-2 build 111 completes first"
expect / "$(igor_event team-a/service-2 110 $(($(cursor 2) + 1000)))" new pending \
    "service-2 build 110 completes later, and is still new"

echo "# Jenkins Notification plugin"
notif() {
    printf '{"name":"asgard","url":"job/asgard/","build":{"full_url":"http://jenkins/job/asgard/18/","number":18,"phase":"%s",%s"url":"job/asgard/18/","timestamp":1526040000000,"scm":{"commit":"abc"}}}' \
        "$1" "${2:+\"status\":\"$2\",}"
}
expect / "$(notif STARTED)" passthrough pending "Notification STARTED: not a completed build"
expect / "$(notif COMPLETED SUCCESS)" unknown pending "Notification COMPLETED of asgard #18"
expect / "$(notif FINALIZED SUCCESS)" replay suppressed "Notification FINALIZED of the same build"

echo "# events that are not builds"
GIT='{"details":{"type":"git","source":"github"},"content":{"repoProject":"team-a","slug":"svc","hash":"4b825dc6","branch":"main"}}'
expect '/webhooks/git?source=github&x=1%202' "$GIT" passthrough pending \
    "a git event on another path, with a query" \
    -H 'X-Spinnaker-User: alice' -H 'X-Request-Id: req-77' -H 'Authorization: Bearer hunter2' \
    -H 'Cookie: session=abc'
GIT_ID=$LAST_ID
printf 'plain text, sent without a Content-Type' >"$TMP/notype"
_sg_curl "$GATE_URL/webhooks/plain" -X POST -H 'Content-Type:' --data-binary "@$TMP/notype"
assert_eq 200/passthrough "$HTTP_STATUS/$(json_get "$REPLY" "d['kind']")" "a body sent without a Content-Type: passthrough"
NOTYPE_ID=$(json_get "$REPLY" "d['id']")
cp "$TMP/notype" "$TMP/body.$NOTYPE_ID"
printf '%s\tpassthrough\t/webhooks/plain\n' "$NOTYPE_ID" >>"$TMP/posts.tsv"
expect '/' "$(igor_event team-a/service-6 999 1526040000000 | sed 's/"building":false/"building":true/')" \
    passthrough pending "a build still running"
expect '/webhooks/raw' 'not json at all {' passthrough pending \
    "a body that is not JSON on a path that is not a build path"

# everything but the replays reaches the sink, once
NFWD=$(awk -F'\t' '$2 != "replay"' "$TMP/posts.tsv" | wc -l)
NREPLAY=$(awk -F'\t' '$2 == "replay"' "$TMP/posts.tsv" | wc -l)
wait_for 10 "the $NFWD forwardable events reach the sink" \
    sh -c "[ \"\$(curl -sf http://$ADMIN/v1/status | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"pending\"])')\" = 0 ]"
sleep 0.5 # a duplicate delivery would show up by now
assert_eq "$NFWD" "$(sink_count)" "the sink received $NFWD requests"
sink_py '
import os
tmp = sys.argv[1]
posts = [l.rstrip("\n").split("\t") for l in open(tmp + "/posts.tsv")]
errors = []
for id_, kind, path in posts:
    body = open(tmp + "/body." + id_, "rb").read().decode()
    got = [r for r in recs if r["event_id"] == id_]
    if kind == "replay":
        if got:
            errors.append("replay %s reached the sink" % id_)
        continue
    if len(got) != 1:
        errors.append("event %s (%s %s) reached the sink %d times" % (id_, kind, path, len(got)))
        continue
    r = got[0]
    if r["method"] != "POST" or r["path"] != path:
        errors.append("event %s: sink got %s %s, expected POST %s" % (id_, r["method"], r["path"], path))
    if r["body"] != body:
        errors.append("event %s: body changed: %r != %r" % (id_, r["body"], body))
    if path != "/webhooks/plain" and r["headers"].get("content-type") != "application/json":
        errors.append("event %s: content-type %r not passed on" % (id_, r["headers"].get("content-type")))
ids = set(p[0] for p in posts)
stray = [r for r in recs if r["event_id"] not in ids]
if stray:
    errors.append("unexpected requests at the sink: %r" % stray)
print("\n".join(errors) or "ok")
' "$TMP" >"$TMP/verify.out"
assert_eq ok "$(cat "$TMP/verify.out")" "exactly the non-replays reached the sink, once each, path+query and body untouched, X-Stormguard-Event-Id = the answer's id"

sink_py '
h = by_id[sys.argv[1]][0]["headers"]
print(h.get("x-spinnaker-user"), h.get("x-request-id"), h.get("user-agent", "")[:5],
      "authorization" in h, "cookie" in h)' "$GIT_ID" >"$TMP/headers.out"
assert_eq "alice req-77 curl/ False False" "$(cat "$TMP/headers.out")" \
    "forwarded headers: X-Spinnaker-*, X-Request-Id, User-Agent kept; Authorization, Cookie not"

ST=$(gate_status)
assert_eq "$NREPLAY" "$(json_get "$ST" "sum(v.get('suppressed', 0) for v in d['counts'].values())")" \
    "status counts $NREPLAY suppressed"
assert_eq "$NFWD" "$(json_get "$ST" "sum(v.get('forwarded', 0) for v in d['counts'].values())")" \
    "status counts $NFWD forwarded"

admin_get "/v1/events?job=team-a/service-1&limit=100"
assert_eq 200 "$HTTP_STATUS" "/v1/events?job=team-a/service-1"
assert_eq "posted marker in snapshot" \
    "$(json_get "$REPLY" "[e['reason'] for e in d['events'] if e['number'] == 102][0]")" \
    "the events API gives the reason of a posted-marker replay"
assert_eq "started at or before the job's cursor" \
    "$(json_get "$REPLY" "[e['reason'] for e in d['events'] if e['number'] == 90][0]")" \
    "and of a cursor replay"
assert_eq "forwarded" "$(json_get "$REPLY" "[e['state'] for e in d['events'] if e['id'] == $NEW200][0]")" \
    "the new build 200 is forwarded"

echo "# a newer snapshot becomes the baseline without a restart"
seed_igor 21 # adds team-a/service-21
run sg snapshot --profile igor --json
assert_rc 0 "a second snapshot with service-21"
SNAP2=$(json_get "$OUT" "d['snapshot_id']")
wait_for 12 "the gate loads snapshot $SNAP2" \
    sh -c "curl -sf http://$ADMIN/v1/status | grep -q '\"snapshot\":{\"id\":$SNAP2,'"
ok "the gate classifies against snapshot $SNAP2 within 12 s"
expect / "$(igor_event team-a/service-21 122 $(($(cursor 21) + 5000)))" replay suppressed \
    "a posted build of the new snapshot's job is a replay"
expect / "$(igor_event team-a/service-21 500 $(($(cursor 21) + 5000)))" new pending \
    "a build beyond it is new"
expect / "$(igor_event team-a/service-1 200 $(($(cursor 1) + 1)))" replay suppressed \
    "the ledger outlives the baseline change: service-1 build 200 is still a replay"

echo "# the ledger survives a restart; a snapshot without a profile is no baseline"
run sg snapshot --json
assert_rc 0 "a snapshot of everything, without --profile"
stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM stops the gate with exit 0"
assert_eq no "$([[ -e $SG_DB-wal ]] && echo yes || echo no)" \
    "a clean stop checkpoints and removes the WAL"
restart_gate
assert_eq "$SNAP2" "$(json_get "$(gate_status)" "d['snapshot']['id']")" \
    "after the restart the baseline is still igor snapshot $SNAP2"
expect / "$(igor_event team-a/service-2 110 $(($(cursor 2) + 1000)))" replay suppressed \
    "after a restart, service-2 build 110 is a replay (ledger)"
expect / "$(igor_event team-z/brand-new 2 1526040100000)" replay suppressed \
    "and so is the formerly unknown job's build 2"
sleep 0.5
assert_eq $((NFWD + 1)) "$(sink_count)" "the sink got only the one new build since"

echo "# Notification plugin events of an Igor-known folder job (--notification-source)"
stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM: exit 0"
GATE_ARGS=(--notification-source jenkins-prod)
restart_gate
folder() { # number phase timestamp
    printf '{"name":"service-3","url":"job/team-a/job/service-3/","build":{"full_url":"http://jenkins/job/team-a/job/service-3/%s/","number":%s,"phase":"%s","status":"SUCCESS","url":"job/team-a/job/service-3/%s/","timestamp":%s}}' \
        "$1" "$1" "$2" "$1" "$3"
}
expect / "$(folder 104 COMPLETED $(($(cursor 3) + 5000)))" replay suppressed \
    "Notification for job/team-a/job/service-3/ #104: Igor's posted marker"
expect / "$(folder 80 COMPLETED $(($(cursor 3) - 5000)))" replay suppressed \
    "Notification for #80, started before service-3's cursor"
expect / "$(folder 400 FINALIZED $(($(cursor 3) + 5000)))" new pending \
    "Notification FINALIZED for #400: new"
expect / "$(igor_event team-a/service-3 400 $(($(cursor 3) + 5000)))" replay suppressed \
    "Igor's event for the same build #400 afterwards: replay"
wait_for 10 "the Notification for #400 reaches the sink" \
    sh -c "[ \"\$(curl -sf http://$ADMIN/v1/status | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"pending\"])')\" = 0 ]"
sleep 0.3
assert_eq $((NFWD + 2)) "$(sink_count)" "the sink got just that one"

# checked last so that a failure here hides none of the checks above:
# libcurl's CURLOPT_POSTFIELDS adds "Content-Type:
# application/x-www-form-urlencoded" unless the request names a type
assert_eq None "$(sink_py 'print(by_id[sys.argv[1]][0]["headers"].get("content-type"))' "$NOTYPE_ID")" \
    "a request without a Content-Type is forwarded without one (none added)"

finish
