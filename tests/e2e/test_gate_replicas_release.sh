#!/usr/bin/env bash
# What replicas on one PostgreSQL store share about the held queue: a
# release at one replica puts its events behind whatever another replica
# queues of the same job afterwards (the queue generation is the store's,
# not each replica's count), and the drain (on_storm = drain) runs at one
# replica of the set, the leader, so the whole set drains at drain_rate.
source "$SG_TESTS/lib.sh"
SG_STORE_BACKEND=pg
start_postgres

start_redis
seed_igor 5
run sg snapshot --profile igor
assert_rc 0 "snapshot --profile igor of 5 jobs"
start_sink

ms() { echo $(($(date +%s%N) / 1000000)); }
mode_of() { replica_use "$1"; json_get "$(gate_status)" "d['mode']"; }
# post R BODY KIND STATE MSG: to replica R
post() {
    replica_use "$1"
    gate_post / "$2"
    [ "$HTTP_STATUS" = 200 ] || fail "$5: HTTP $HTTP_STATUS: $REPLY"
    assert_eq "$3/$4" "$(json_get "$REPLY" "d['kind'] + '/' + d['state']")" "$5"
}
numbers() { # JOB: build numbers of JOB the sink got, in order
    sink_py 'print(" ".join(str(json.loads(r["body"])["content"]["project"]["lastBuild"]["number"]) for r in ok if json.loads(r["body"])["content"]["project"]["name"] == sys.argv[1]))' "$1"
}
guard_at() { [ "$(mode_of "$1")" = guard ]; }
normal_at() { [ "$(mode_of "$1")" = normal ]; }

ARGS=(--watch off --retry-base-ms 100 --storm-same-job 0 --storm-first-seen 0
    --storm-first-seen-tags 0 --storm-replay-share 0 --storm-rate-factor 0)
start_gate "${ARGS[@]}"
replica_save 1
start_gate "${ARGS[@]}"
replica_save 2

echo "# a release at replica 1, then a build of the same job at replica 2: delivered after the released"
run sg guard on --admin "${R_ADMIN[1]}" --reason "release test"
assert_rc 0 "guard on at replica 1"
wait_for 3 "replica 2 in guard mode too" guard_at 2
for n in 1 2 3; do
    post 1 "$(igor_event team-q/late $n 1526040000000)" unknown held "team-q/late build $n is held at replica 1"
done
sink_set 503 # the released stay pending, retried, while the next build comes in
run sg release --admin "${R_ADMIN[1]}" --job team-q/late --json
assert_rc 0 "release --job team-q/late at replica 1"
assert_eq 3 "$(json_get "$OUT" "d['released']")" "three released"
run sg guard off --admin "${R_ADMIN[1]}"
assert_rc 0 "guard off at replica 1"
wait_for 3 "replica 2 back to normal" normal_at 2
post 2 "$(igor_event team-q/late 10 1526040100000)" unknown pending \
    "team-q/late build 10 at replica 2: forwarded (normal mode)"
run sql "SELECT (SELECT qgen FROM event WHERE job = 'team-q/late' AND number = 10) >=
                (SELECT max(qgen) FROM event WHERE job = 'team-q/late' AND number < 10)"
assert_eq t "$OUT" "build 10 joined the queue generation of the released builds, or a later one"
sleep 1
sink_set 200
late_done() { [ "$(numbers team-q/late | wc -w)" -ge 4 ]; }
wait_for 20 "the four builds of team-q/late reach the sink" late_done
assert_eq "1 2 3 10" "$(numbers team-q/late)" "the released builds went first, then build 10, once each"

stop_gate
replica_use 1
stop_gate

echo "# the drain at two replicas: drain_rate for the whole set"
new_store drain
DRAIN=(--on-storm drain --drain-rate 2)
start_gate "${ARGS[@]}" "${DRAIN[@]}"
replica_save 1
start_gate "${ARGS[@]}" "${DRAIN[@]}"
replica_save 2
LEADS="holds the watcher's lock: it runs the drain"
leads() { grep -l "$LEADS" "${R_LOG[1]}" "${R_LOG[2]}" 2>/dev/null | wc -l; }
one_leads() { [ "$(leads)" = 1 ]; }
wait_for 10 "one replica leads" one_leads
run sg guard on --admin "${R_ADMIN[1]}" --reason "drain test"
assert_rc 0 "guard on at replica 1"
wait_for 3 "replica 2 in guard mode too" guard_at 2
T0=$(ms)
for n in $(seq 1 24); do
    post $((n % 2 + 1)) "$(igor_event team-d/job-$n 1 1526040000000)" unknown held \
        "team-d/job-$n is held" >/dev/null
done
ok "24 unknown builds of 24 jobs held, posted to both replicas"
sleep 5
DRAINED=$(sql "SELECT count(*) FROM event WHERE job LIKE 'team-d/%' AND state <> 'held'")
T1=$(ms)
SECONDS_GONE=$(((T1 - T0 + 999) / 1000))
echo "# $DRAINED of 24 drained in $SECONDS_GONE s at drain_rate 2"
assert_le "$DRAINED" $((2 * SECONDS_GONE + 2)) "the set drains at drain_rate (one replica drains), not twice it"
[ "$DRAINED" -ge 4 ] || fail "the drain runs: $DRAINED drained in $SECONDS_GONE s"
ok "the drain runs ($DRAINED drained)"
assert_eq 1 "$(leads)" "one replica says it runs the drain"

echo "# the leader stops: the other takes the lock and drains the rest"
L=1
grep -q "$LEADS" "${R_LOG[2]}" && L=2
O=$((3 - L))
replica_use $L
stop_gate
drains_now() { grep -q "$LEADS" "${R_LOG[$O]}"; }
wait_for 10 "replica $O takes the lock" drains_now
left() { [ "$(sql "SELECT count(*) FROM event WHERE job LIKE 'team-d/%' AND state = 'held'")" = 0 ]; }
wait_for 30 "replica $O drains the rest" left
replica_use $O
stop_gate
finish
