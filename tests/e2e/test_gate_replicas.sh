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

echo "# the same 60 builds to both replicas at once, in opposite orders, 8 posts at a time each"
# batches of several builds meet the other replica's in the other order:
# the jobs' locks are taken in one order, so no batch deadlocks (a 503)
"$PY" - "${R_URL[1]}" "${R_URL[2]}" "$TMP" <<'PY' >"$TMP/burst.out"
import json, sys, threading, urllib.request, urllib.error
urls, tmp = sys.argv[1:3], sys.argv[3]
builds = [("team-a/service-%d" % (1 + i % 6), 800 + i) for i in range(60)]
def body(job, n):
    return json.dumps({"details": {"type": "build", "source": "igor"}, "content": {
        "master": "jenkins-prod", "project": {"name": job, "lastBuild": {
            "number": n, "result": "SUCCESS", "building": False,
            "timestamp": str(1526033000000 + n), "duration": 1000}}}}).encode()
codes, kinds, lock = [], [], threading.Lock()
def poster(url, order, k):
    for job, n in order[k::8]:
        req = urllib.request.Request(url + "/", body(job, n), {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                code, kind = r.status, json.loads(r.read())["kind"]
        except Exception as e:  # a 503 (HTTPError) or a dropped connection
            code, kind = getattr(e, "code", 0), None
        with lock:
            codes.append(code)
            kinds.append(kind)
ts = [threading.Thread(target=poster, args=(urls[r], builds if r == 0 else builds[::-1], k))
      for r in (0, 1) for k in range(8)]
for t in ts: t.start()
for t in ts: t.join()
print(len(codes), sum(c == 200 for c in codes), kinds.count("new"), kinds.count("replay"))
PY
assert_eq "120 120 60 60" "$(cat "$TMP/burst.out")" \
    "120 posts, all answered 200: each build new at one replica, a replay at the other"
burst_at_sink() { [ "$(sink_py 'print(sum(1 for r in ok if 800 <= json.loads(r["body"])["content"]["project"]["lastBuild"]["number"] < 860))')" -ge 60 ]; }
wait_for 20 "the 60 builds reach the sink" burst_at_sink
sleep 1
assert_eq "60 60" "$(sink_py '
n = [json.loads(r["body"])["content"]["project"]["lastBuild"]["number"] for r in ok]
n = [x for x in n if 800 <= x < 860]
print(len(n), len(set(n)))')" "each of the 60 builds reached the sink once"

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
order() { sink_py 'print(" ".join(str(json.loads(r["body"])["content"]["project"]["lastBuild"]["number"]) for r in ok if json.loads(r["body"])["content"]["project"]["name"] == "team-a/service-2" and 700 < json.loads(r["body"])["content"]["project"]["lastBuild"]["number"] < 800))'; }
order_done() { [ "$(order | wc -w)" -ge 24 ]; }
wait_for 30 "the 24 builds of team-a/service-2 reach the sink" order_done
assert_eq "$(seq 701 724 | tr '\n' ' ' | sed 's/ $//')" "$(order)" \
    "team-a/service-2's builds reached the downstream in the order they were posted"
sink_set 200 0

echo "# two jobs' builds posted to both replicas at once: each job's go out in journal order"
sink_set 503
"$PY" - "${R_URL[1]}" "${R_URL[2]}" <<'PY' >"$TMP/conc.out"
import json, sys, threading, urllib.request
urls = sys.argv[1:3]
def post(url, job, n):
    b = json.dumps({"details": {"type": "build", "source": "igor"}, "content": {
        "master": "jenkins-prod", "project": {"name": job, "lastBuild": {
            "number": n, "result": "SUCCESS", "building": False,
            "timestamp": str(1526034000000 + n), "duration": 1000}}}}).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "/", b,
                {"Content-Type": "application/json"}), timeout=20) as r:
            return r.status
    except Exception as e:  # a 503 or a dropped connection counts, not kills the poster
        return getattr(e, "code", 0)
bad = []
def poster(r):
    for n in range(900 + r, 940, 2):
        for job in ("team-a/service-5", "team-a/service-6"):
            if post(urls[r], job, n) != 200:
                bad.append(n)
ts = [threading.Thread(target=poster, args=(r,)) for r in (0, 1)]
for t in ts: t.start()
for t in ts: t.join()
print(len(bad))
PY
assert_eq 0 "$(cat "$TMP/conc.out")" "80 concurrent posts answered 200"
sleep 1.5
sink_set 200 5
conc_done() { [ "$(sink_py 'print(sum(1 for r in ok if json.loads(r["body"])["content"]["project"]["lastBuild"]["number"] >= 900))')" -ge 80 ]; }
wait_for 30 "the 80 builds reach the sink" conc_done
assert_eq ok "$(sink_py '
by_job = {}
for r in ok:
    b = json.loads(r["body"])["content"]["project"]
    if b["lastBuild"]["number"] >= 900:
        by_job.setdefault(b["name"], []).append(int(r["event_id"]))
bad = {j: ids for j, ids in by_job.items() if ids != sorted(ids) or len(ids) != 40}
print("ok" if len(by_job) == 2 and not bad else "out of journal order: %r" % bad)')" \
    "each job's builds reached the downstream in the order the store journaled them"

echo "# SIGKILL of a replica while builds stream in over both"
: >"$SINK_LOG"
STREAM_URLS="${R_URL[1]} ${R_URL[2]}"
sink_set 200 150 # slow: the replica killed dies with deliveries claimed and in flight
stream_start 300 20 3
wait_for 60 "100 builds accepted" stream_has_accepted 100
# the one holding the most claims dies (a job's queue stays with the
# replica that claimed its head)
name_of() { replica_use "$1"; json_get "$(gate_status)" "d['replica']"; }
N1=$(name_of 1) N2=$(name_of 2)
TOP=$(sql "SELECT claimed_by FROM event WHERE state = 'pending' AND claimed_by IS NOT NULL
           GROUP BY claimed_by ORDER BY count(*) DESC LIMIT 1")
if [ "$TOP" = "$N2" ]; then K=2 L=1; else K=1 L=2; fi
replica_use $K
kill_gate
echo "# replica $K killed after $(stream_accepted) posts answered 200"
replica_use $L
stream_finish 120
stream_verify >"$TMP/verify.out"
assert_eq ok "$(cat "$TMP/verify.out")" \
    "every build answered 200 reached the sink once; duplicates only as re-deliveries of one event id"
run sql "SELECT count(*) FROM event WHERE state = 'pending'"
assert_eq 0 "$OUT" "nothing is left pending: replica $L delivered replica $K's claims"
assert_contains "$(cat "${R_LOG[$L]}")" "claimed by replicas whose lease ran out" \
    "replica $L says it took over claims"
run sql "SELECT name FROM replica WHERE lease_until >= (extract(epoch FROM clock_timestamp()) * 1000)::bigint"
assert_eq "$(name_of $L)" "$OUT" "replica $L alone is live"

stop_gate
assert_eq 0 "$GATE_RC" "replica $L: SIGTERM, exit 0"
run sql "SELECT count(*) FROM replica WHERE name = '$(if [ $L = 1 ]; then echo "$N1"; else echo "$N2"; fi)'"
assert_eq 0 "$OUT" "replica $L left the table on its way out"
finish
