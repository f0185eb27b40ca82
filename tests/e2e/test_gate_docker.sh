#!/usr/bin/env bash
# Igor's Docker image events through the gate, end to end: a real
# redis-server holds Igor's Docker index for two accounts
# (igor:dockerRegistry:v2:<account>:<repository>:<tag>, field digest); after
# a snapshot and a FLUSHALL, re-posted known tags are suppressed, a
# re-pushed tag (a new digest) is forwarded at once, a new tag of a known
# repository and the tags of an unknown repository are held in guard mode;
# a second delivery of a held tag is a replay (the ledger); held events
# survive kill -9; release --newest-only forwards the last posted tag per
# repository and supersedes the others; --job matches repository:tag; many
# first-seen tags of one account are a storm of that account alone.
source "$SG_TESTS/lib.sh"

start_redis
digest() { printf 'sha256:%064s' "$1" | tr ' ' 0; }
for acct in dockerhub gcr quay; do
    for repo in app web; do
        for t in 1 2 3; do
            rcli hset "igor:dockerRegistry:v2:$acct:library/$repo:v$t" digest "$(digest "$t")" >/dev/null
        done
    done
done
# a tag whose manifest Igor could not read: stored as "~"
rcli hset "igor:dockerRegistry:v2:gcr:library/web:nodigest" digest "~" >/dev/null
run sg snapshot --profile igor --json
assert_rc 0 "snapshot of Igor's Docker index"

start_sink
# the storm detector's first-seen tags signal alone (20, its default)
start_gate --redis "redis://127.0.0.1:$PORT" --profile igor --check-interval-ms 200 \
    --guard-duration 1h --snapshot-interval 0 --storm-first-seen-tags 20 --storm-first-seen 0 \
    --storm-same-job 0 --storm-replay-share 0 --storm-rate-factor 0
# docker_event ACCOUNT REPOSITORY TAG DIGEST-JSON: Igor's postEvent body
docker_event() {
    printf '{"details":{"type":"docker","source":"igor"},"content":{"account":"%s","registry":"index.docker.io","repository":"%s","tag":"%s","digest":%s},"artifact":{"type":"docker","name":"%s","version":"%s","reference":"index.docker.io/%s:%s","fileName":"%s:%s","metadata":{"registry":"index.docker.io"},"decorated":false}}' \
        "$1" "$2" "$3" "$4" "$2" "$3" "$2" "$3" "$2" "$3"
}
# post BODY KIND STATE MSG
post() {
    gate_post / "$1"
    [ "$HTTP_STATUS" = 200 ] || fail "$4: HTTP $HTTP_STATUS: $REPLY"
    assert_eq "$2/$3" "$(json_get "$REPLY" "d['kind'] + '/' + d['state']")" "$4"
}
q() { printf '"%s"' "$1"; }
link_up() { [ "$(json_get "$(gate_status)" "d['redis']['link']")" = up ]; }
mode_is() { [ "$(json_get "$(gate_status)" "d['mode']")" = "$1" ]; }
wait_for 10 "the watcher connects" link_up

echo "# normal mode: a new tag of a known repository is new"
post "$(docker_event dockerhub library/app v4 "$(q "$(digest 4)")")" new pending \
    "a new tag of a known repository is forwarded"
post "$(docker_event dockerhub library/app v4 null)" replay suppressed \
    "the same tag without a digest is a replay: the ledger judges it on the tag alone"
run sg events --admin "$ADMIN" --json --limit 2
assert_eq "v4" "$(json_get "$OUT" "d['events'][1]['tag']")" "events lists a Docker event's tag"
assert_eq "$(digest 4)" "$(json_get "$OUT" "d['events'][1]['digest']")" "and its digest"
assert_eq "library/app" "$(json_get "$OUT" "d['events'][1]['job']")" "its repository as the job"
assert_eq false "$(json_get "$OUT" "'number' in d['events'][1]")" "and no build number"
run sg events --admin "$ADMIN" --limit 2
assert_contains "$OUT" "v4" "the table shows the tag"

echo "# FLUSHALL: guard mode"
rcli flushall >/dev/null
wait_for 5 "guard mode after FLUSHALL" mode_is guard
NFWD=$(sink_count)
post "$(docker_event dockerhub library/app v1 "$(q "$(digest 1)")")" replay suppressed \
    "a known tag with its digest is a replay"
post "$(docker_event gcr library/web v2 "$(q "$(digest 2)")")" replay suppressed \
    "of the other account too"
post "$(docker_event gcr library/web v3 null)" replay suppressed \
    "a known tag without a digest is judged on the tag alone"
post "$(docker_event gcr library/web nodigest "$(q "$(digest 9)")")" replay suppressed \
    "a tag Igor stored without a digest is known"
post "$(docker_event dockerhub library/web v2 "$(q "$(digest 7)")")" new pending \
    "a re-pushed tag (another digest) is forwarded at once"
post "$(docker_event dockerhub library/web v2 "$(q "$(digest 7)")")" replay suppressed \
    "its second delivery is a replay (the ledger)"
post "$(docker_event dockerhub library/app v5 "$(q "$(digest 5)")")" unknown held \
    "in guard mode a new tag of a known repository is held"
for t in a b c; do
    post "$(docker_event dockerhub team/unknown "$t" "$(q "$(digest "1$t")")")" unknown held \
        "a tag of an unknown repository is held ($t)"
done
post "$(docker_event dockerhub team/unknown b "$(q "$(digest 1b)")")" replay suppressed \
    "a second delivery of a held tag is a replay"
post '{"details":{"type":"docker","source":"igor"},"content":{"account":"dockerhub","repository":"library/app","tag":"","digest":null}}' \
    passthrough pending "an event without a tag starts nothing in Echo: passed through"
sleep 0.5
assert_eq $((NFWD + 2)) "$(sink_count)" "only the re-pushed tag and the pass-through reached the sink"
ST=$(gate_status)
assert_eq 4 "$(json_get "$ST" "d['held']")" "4 Docker events held"
run sg held --admin "$ADMIN" --json
assert_eq 3 "$(json_get "$OUT" "[j['count'] for j in d['jobs'] if j['job'] == 'team/unknown'][0]")" \
    "held groups the unknown repository's tags"

echo "# held Docker events survive kill -9"
kill_gate
restart_gate
wait_for 10 "the gate is back" link_up
assert_eq 4 "$(json_get "$(gate_status)" "d['held']")" "still 4 held after kill -9"
post "$(docker_event dockerhub library/app v4 null)" replay suppressed \
    "after the restart the ledger still knows the tag"

echo "# release: --job matches repository:tag; --newest-only keeps the last posted tag"
NFWD=$(sink_count)
run sg release --admin "$ADMIN" --job 'library/app:v5'
assert_rc 0 "release one tag by repository:tag"
assert_contains "$OUT" "released 1 event" "that tag only"
forwarded_more() { [ "$(sink_count)" -gt "$NFWD" ]; }
wait_for 5 "the released tag reaches the sink" forwarded_more
run sg release --admin "$ADMIN" --all --newest-only
assert_rc 0 "release --newest-only"
assert_contains "$OUT" "released 1 event" "one tag of the unknown repository released"
assert_contains "$OUT" "2 older build" "the other two superseded"
run sql "SELECT tag, state, last_error FROM event WHERE job = 'team/unknown' AND state IN ('superseded', 'pending', 'forwarded') ORDER BY id"
assert_contains "$OUT" "a|superseded|superseded by tag c" "the first superseded by the last posted"
assert_contains "$OUT" "b|superseded|superseded by tag c" "and the second"
echo "# many first-seen tags of one account: a storm for that account alone"
run sg guard off --admin "$ADMIN"
assert_rc 0 "guard mode off"
for t in $(seq 1 19); do
    post "$(docker_event quay library/app "n$t" "$(q "$(digest "n$t")")")" new pending \
        "new tag n$t of a known repository"
done
post "$(docker_event quay library/app n20 "$(q "$(digest n20)")")" unknown held \
    "the twentieth first-seen tag of quay trips the storm (first_seen_tags 20) and is held"
post "$(docker_event quay library/app n21 "$(q "$(digest n21)")")" unknown held \
    "in quay's storm a new tag is held"
post "$(docker_event gcr library/app n1 "$(q "$(digest n1)")")" new pending \
    "another account's new tag is forwarded"
ST=$(gate_status)
assert_eq '["quay"]' "$(json_get "$ST" "[s['source'] for s in d['storms']]")" "the storm is quay's"
assert_contains "$(json_get "$ST" "d['storms'][0]['trigger']")" "20 Docker tags never seen before" \
    "the trigger names the first-seen tags"
stop_gate
finish
