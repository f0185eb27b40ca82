#!/usr/bin/env bash
# Gates as replicas on one PostgreSQL store: the same build posted to two
# replicas at the same moment is forwarded once; one job's builds posted
# alternately to the replicas reach the downstream in order; a replica
# killed with SIGKILL while builds stream in over both loses nothing
# answered 200, and its claims go to the other after the lease, delivered
# again with the same X-Stormguard-Event-Id.
source "$SG_TESTS/lib.sh"
SG_STORE_BACKEND=pg
start_postgres

start_redis
seed_igor 20
run sg snapshot --profile igor
assert_rc 0 "snapshot --profile igor of 20 jobs"
start_sink

start_gate --retry-base-ms 100
replica_save 1
start_gate --retry-base-ms 100
replica_save 2
assert_ne "${R_URL[1]}" "${R_URL[2]}" "two replicas on one store"
run sql "SELECT count(*) FROM replica"
assert_eq 2 "$OUT" "both joined the replica table"
two_listed() { [ "$(json_get "$(gate_status)" "len(d['replicas'])")" = 2 ]; }
wait_for 10 "/v1/status lists both replicas" two_listed
ST=$(gate_status)
assert_contains "$(json_get "$ST" "[r['name'] for r in d['replicas']]")" "$(json_get "$ST" "d['replica']")" \
    "the status names this replica among them"
assert_eq "[true, true]" "$(json_get "$ST" "[r['live'] for r in d['replicas']]")" "both live"

echo "# the same build to both replicas at once, 40 times: forwarded once each"
for n in $(seq 1 40); do
    body=$(igor_event team-a/service-1 $((500 + n)) $((1526031000000 + 10000 + n)))
    pids=()
    for r in 1 2; do
        curl -s -o "$TMP/same-$n-$r.json" -w '%{http_code}\n' --max-time 10 -X POST \
            -H 'Content-Type: application/json' --data-binary "$body" "${R_URL[$r]}/" \
            >"$TMP/same-$n-$r.code" &
        pids+=($!)
    done
    wait "${pids[@]}"
done
codes=$(cat "$TMP"/same-*.code | sort | uniq -c | tr -s ' ')
assert_eq "80 200" "${codes# }" "all 80 posts answered 200"
kinds=$(cat "$TMP"/same-*.json | "$PY" -c '
import json, sys, collections
print(" ".join("%s=%d" % kv for kv in sorted(collections.Counter(json.loads(l)["kind"] for l in sys.stdin.read().replace("}{", "}\n{").splitlines()).items())))')
assert_eq "new=40 replay=40" "$kinds" "each build new at one replica and a replay at the other"
same_at_sink() { [ "$(sink_py 'print(sum(1 for r in ok if json.loads(r["body"])["content"]["project"]["lastBuild"]["number"] > 500))')" -ge 40 ]; }
wait_for 20 "the 40 builds reach the sink" same_at_sink
sleep 1
GOT=$(sink_py '
n = [json.loads(r["body"])["content"]["project"]["lastBuild"]["number"] for r in ok]
n = [x for x in n if x > 500]
print(len(n), len(set(n)))')
assert_eq "40 40" "$GOT" "the sink got each of the 40 builds exactly once"
run sql "SELECT count(*) FROM ledger WHERE number > 500"
assert_eq 40 "$OUT" "the ledger holds each once"

echo "# one job's builds alternately to the replicas: delivered in order"
# the downstream refuses for a while: every replica's deliveries wait on
# their own retry timers, which would let a later build overtake an earlier
# one were each replica to deliver what it journaled
sink_set 503
for n in $(seq 1 24); do
    r=$((n % 2 + 1))
    curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST -H 'Content-Type: application/json' \
        --data-binary "$(igor_event team-a/service-2 $((700 + n)) $((1526032000000 + 10000 + n)))" \
        "${R_URL[$r]}/" >"$TMP/order.code"
    assert_eq 200 "$(cat "$TMP/order.code")" "build $((700 + n)) to replica $r" >/dev/null
done
sleep 1.5
sink_set 200 10
order() { sink_py 'print(" ".join(str(json.loads(r["body"])["content"]["project"]["lastBuild"]["number"]) for r in ok if json.loads(r["body"])["content"]["project"]["name"] == "team-a/service-2"))'; }
order_done() { [ "$(order | wc -w)" -ge 24 ]; }
wait_for 30 "the 24 builds of team-a/service-2 reach the sink" order_done
assert_eq "$(seq 701 724 | tr '\n' ' ' | sed 's/ $//')" "$(order)" \
    "team-a/service-2's builds reached the downstream in the order they were posted"
sink_set 200 0

echo "# SIGKILL of replica 1 while builds stream in over both"
: >"$SINK_LOG"
STREAM_URLS="${R_URL[1]} ${R_URL[2]}"
sink_set 200 150 # slow: replica 1 dies with deliveries claimed and in flight
stream_start 300 20 3
wait_for 60 "100 builds accepted" stream_has_accepted 100
replica_use 1
kill_gate
echo "# replica 1 killed after $(stream_accepted) posts answered 200"
replica_use 2
stream_finish 120
stream_verify >"$TMP/verify.out"
assert_eq ok "$(cat "$TMP/verify.out")" \
    "every build answered 200 reached the sink once; duplicates only as re-deliveries of one event id"
run sql "SELECT count(*) FROM event WHERE state = 'pending'"
assert_eq 0 "$OUT" "nothing is left pending: replica 2 delivered replica 1's claims"
assert_contains "$(cat "${R_LOG[2]}")" "claimed by replicas whose lease ran out" \
    "replica 2 says it took over claims"
run sql "SELECT count(*) FROM replica WHERE lease_until >= (extract(epoch FROM clock_timestamp()) * 1000)::bigint"
assert_eq 1 "$OUT" "one replica is live"

stop_gate
assert_eq 0 "$GATE_RC" "replica 2: SIGTERM, exit 0"
run sql "SELECT count(*) FROM replica"
assert_eq 1 "$OUT" "replica 2 left the table on its way out (replica 1's row waits out its minute)"
finish
