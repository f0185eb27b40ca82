#!/usr/bin/env bash
# Guard and storm mode across replicas on one PostgreSQL store, with posts
# spread over both: only one replica watches Redis (the watcher's lock); a
# wipe it notices puts the other in guard mode within a second; replays are
# suppressed, new builds forwarded once, unknown builds held, whichever
# replica takes them; the held queue and a release --newest-only act on the
# whole set from either; an operator's guard off at one ends it at both; a
# storm one replica's detector trips holds at the other; the watcher killed,
# the other takes the lock and notices the next wipe.
source "$SG_TESTS/lib.sh"
SG_STORE_BACKEND=pg
start_postgres

start_redis
seed_igor 5
run sg snapshot --profile igor
assert_rc 0 "snapshot --profile igor of 5 jobs"
start_sink

ARGS=(--redis "redis://127.0.0.1:$PORT" --profile igor --rewarm on --check-interval-ms 200
    --guard-duration 1h --snapshot-interval 0 --storm-same-job 0 --storm-first-seen 4
    --storm-first-seen-tags 0 --storm-replay-share 0 --storm-rate-factor 0 --storm-cooldown 1h)
start_gate "${ARGS[@]}"
replica_save 1
start_gate "${ARGS[@]}"
replica_save 2

mode_of() { replica_use "$1"; json_get "$(gate_status)" "d['mode']"; }
watched() { replica_use "$1"; [ "$(json_get "$(gate_status)" "isinstance(d['redis'], dict)")" = true ]; }
watched_elsewhere() { replica_use "$1"; [ "$(json_get "$(gate_status)" "d['redis']")" = "watched by another replica" ]; }
one_watches() { watched 1 || watched 2; }
wait_for 15 "one replica takes the watcher's lock" one_watches
sleep 3 # the other asks every 2 s: it must not get the lock too
if watched 1; then W=1 O=2; else W=2 O=1; fi
watched $O && fail "both replicas watch Redis"
ok "only replica $W watches Redis"
watched_elsewhere $O || fail "replica $O's status: $(gate_status)"
ok "replica $O's status says another replica watches Redis"
assert_contains "$(cat "${R_LOG[$W]}")" "holds the watcher's lock" "replica $W says it holds the lock"
replica_use $W
link_up() { [ "$(json_get "$(gate_status)" "d['redis']['link']")" = up ]; }
wait_for 10 "the watcher connects" link_up

ms() { echo $(($(date +%s%N) / 1000000)); }
cursor() { echo $((1526030000000 + $1 * 1000)); }
# post R BODY KIND STATE MSG: to replica R
post() {
    replica_use "$1"
    gate_post / "$2"
    [ "$HTTP_STATUS" = 200 ] || fail "$5: HTTP $HTTP_STATUS: $REPLY"
    assert_eq "$3/$4" "$(json_get "$REPLY" "d['kind'] + '/' + d['state']")" "$5"
}

echo "# a job first seen at replica $W is known to replica $O (its storm detector counts it as seen)"
post $W "$(igor_event team-n/fresh 1 1526040000000)" unknown pending \
    "team-n/fresh build 1 at replica $W: unknown, forwarded in normal mode"
sleep 5.5 # replica $O reads what the others accepted with its ages, every 5 s
post $O "$(igor_event team-n/fresh 2 1526040001000)" new pending \
    "team-n/fresh build 2 at replica $O: new, not first seen (its ledger knows the job from replica $W)"

echo "# a wipe the watcher notices: the other replica in guard mode within 1 s"
assert_eq normal "$(mode_of $O)" "replica $O: normal before the wipe"
rcli flushall >/dev/null
T0=$(ms)
in_guard() { [ "$(mode_of "$1")" = guard ]; }
wait_for 5 "replica $W in guard mode" in_guard $W
T1=$(ms)
wait_for 5 "replica $O in guard mode" in_guard $O
T2=$(ms)
echo "# replica $W in guard mode $((T1 - T0)) ms after FLUSHALL, replica $O $((T2 - T1)) ms later"
assert_le $((T2 - T1)) 1000 "replica $O follows within 1 s"
replica_use $O
assert_contains "$(json_get "$(gate_status)" "d['guard']['reason']")" "from replica" \
    "replica $O's guard reason names the replica it came from"
run sql "SELECT count(*) FROM episode WHERE cause = 'flush'"
assert_eq 1 "$OUT" "one episode for the wipe, opened by the watcher alone"

echo "# posts alternately to both: replays suppressed, new forwarded once, unknown held"
NFWD=$(sink_count)
for r in 1 2; do
    post $r "$(igor_event team-a/service-$r 102 $(($(cursor $r) + 60000)))" replay suppressed \
        "replica $r: a replay is suppressed"
    post $r "$(igor_event team-a/service-$((r + 2)) 500 $(($(cursor $((r + 2))) + 60000)))" new pending \
        "replica $r: a new build of a known job is forwarded"
done
for n in 1 2 3 4; do
    post $((n % 2 + 1)) "$(igor_event team-z/stale $n 1526040000000)" unknown held \
        "unknown team-z/stale build $n is held (replica $((n % 2 + 1)))"
done
post 2 "$(igor_event team-y/other 7 1526040000000)" unknown held "unknown team-y/other build 7 is held"
post 1 "$(igor_event team-y/other 7 1526040000000)" replay suppressed \
    "the same held build at the other replica: a replay"
new_at_sink() { [ "$(sink_count)" -ge $((NFWD + 2)) ]; }
wait_for 10 "the 2 new builds reach the sink" new_at_sink
sleep 0.5
assert_eq $((NFWD + 2)) "$(sink_count)" "only the 2 new builds reached the sink"
for r in 1 2; do
    run sg held --admin "${R_ADMIN[$r]}" --json
    assert_rc 0 "held from replica $r"
    assert_eq 5 "$(json_get "$OUT" "d['held']")" "replica $r lists the whole set's 5 held events"
done

echo "# release --newest-only from replica $O: one build per job, once"
run sg release --admin "${R_ADMIN[$O]}" --all --newest-only --json
assert_rc 0 "release --all --newest-only"
released_at_sink() { [ "$(sink_count)" -ge $((NFWD + 4)) ]; }
wait_for 15 "the 2 newest held builds reach the sink" released_at_sink
sleep 1
GOT=$(sink_py '
n = sorted("%s#%s" % (b["content"]["project"]["name"], b["content"]["project"]["lastBuild"]["number"])
           for b in (json.loads(r["body"]) for r in ok) if b["content"]["project"]["name"] in ("team-z/stale", "team-y/other"))
print(" ".join(n))')
assert_eq "team-y/other#7 team-z/stale#4" "$GOT" "the newest build of each job, each once"

echo "# guard off at replica $O ends guard mode at replica $W within 1 s"
run sg guard off --admin "${R_ADMIN[$O]}"
assert_rc 0 "guard off at replica $O"
T0=$(ms)
in_normal() { [ "$(mode_of "$1")" = normal ]; }
wait_for 5 "replica $W back to normal" in_normal $W
echo "# replica $W normal $(($(ms) - T0)) ms after the off at replica $O"
assert_le $(($(ms) - T0)) 1500 "within a second (and a status read)"

echo "# the listening connections killed: each replica listens again"
listening() { [ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'")" = "$1" ]; }
wait_for 5 "both replicas listen" listening 2
run sql "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'"
wait_for 15 "both replicas listen again" listening 2
for r in 1 2; do
    assert_contains "$(cat "${R_LOG[$r]}")" "listening for the other replicas' modes: " \
        "replica $r says its listening connection went"
done

echo "# a storm one replica's detector trips: held at the other"
in_storm() { [ "$(mode_of "$1")" = storm ]; }
for n in $(seq 1 8); do # first-seen jobs, to replica W only, until its detector trips
    replica_use $W
    gate_post / "$(igor_event team-s/new-$n 1 1526040000000)"
    assert_eq 200 "$HTTP_STATUS" "first-seen job team-s/new-$n at replica $W" >/dev/null
    in_storm $W && break
done
in_storm $W || fail "replica $W's detector did not trip on 8 first-seen jobs"
ok "replica $W in storm mode after $n first-seen jobs"
T0=$(ms)
wait_for 2 "replica $O in storm mode" in_storm $O
assert_le $(($(ms) - T0)) 1000 "replica $O follows within 1 s"
post $O "$(igor_event team-s/new-9 1 1526040000000)" unknown held \
    "replica $O holds an unknown build in the storm replica $W saw"
run sql "SELECT count(*) FROM episode WHERE cause = 'storm'"
assert_eq 1 "$OUT" "one storm episode, the detector's replica's"

echo "# the watcher killed: the other takes the lock and notices the next wipe"
replica_use $W
kill_gate
T0=$(ms)
wait_for 15 "replica $O takes the watcher's lock" watched $O
echo "# replica $O watches $(($(ms) - T0)) ms after the watcher died"
replica_use $O
wait_for 10 "replica $O's watcher connects" link_up
WIPES=$(json_get "$(gate_status)" "d['wipes']")
rcli flushall >/dev/null
more_wipes() { [ "$(json_get "$(gate_status)" "d['wipes']")" -gt "$WIPES" ]; }
wait_for 5 "replica $O notices the next wipe" more_wipes

echo "# a flush announced to a replica that does not watch: the watcher does not rewarm it"
wait_for 10 "the rewarm after that wipe brings the igor keys back" \
    sh -c "[ \$(redis-cli -p $PORT --scan --pattern 'igor:*' | wc -l) -gt 0 ]"
start_gate "${ARGS[@]}"
replica_save 3
sleep 2.5 # it asks for the watcher's lock, and is refused
watched 3 && fail "replica 3 took the lock replica $O holds"
run sg flush --match 'igor:*' --admin "${R_ADMIN[3]}" --reason "runbook" --json
assert_rc 0 "stormguard flush announced to replica 3, then done"
replica_use $O
more_wipes2() { [ "$(json_get "$(gate_status)" "d['wipes']")" -gt $((WIPES + 1)) ]; }
wait_for 5 "replica $O notices the flush" more_wipes2
sleep 2
assert_eq 0 "$(rcli --scan --pattern 'igor:*' | wc -l)" "the flushed keys stay flushed: no rewarm"
# told before the wipe came (the notice) or read when it came (the table)
grep -Eq "announced by stormguard flush|flush announced at another replica: no rewarm" "${R_LOG[$O]}" ||
    fail "replica $O does not say the wipe was announced: $(tail -5 "${R_LOG[$O]}")"
ok "replica $O took the wipe for the announced flush"

for r in 3 $O; do
    replica_use $r
    stop_gate
    assert_eq 0 "$GATE_RC" "replica $r: SIGTERM, exit 0"
done
finish
