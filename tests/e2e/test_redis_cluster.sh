#!/usr/bin/env bash
# A Redis Cluster of three masters (redis-cli --cluster create on free
# 127.0.0.1 ports) with 10,000 keys across the slots, Igor's among them.
# inspect and snapshot (scan) cover every master: every key counted and
# taken, whichever node the URL names; --method sync says to use scan.
# restore sends each key to the master of its slot, following ASK for a
# slot being migrated. flush plans, refuses, snapshots, deletes (one
# UNLINK per key, no CROSSSLOT) and verifies on every master (the daemon's
# watch of a Cluster is test_redis_cluster_watch). Pointing redis:// at a
# sentinel names the redis-sentinel:// URL instead.
source "$SG_TESTS/lib.sh"

NODES=()
for i in 1 2 3; do
    start_redis --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000
    NODES+=("$PORT")
done
redis-cli --cluster create "${NODES[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >"$TMP/create.log" 2>&1 ||
    { cat "$TMP/create.log" >&2; fail "redis-cli --cluster create"; }
cluster_ok() {
    local p
    for p in "${NODES[@]}"; do
        redis-cli -p "$p" cluster info | grep -q "cluster_state:ok" || return 1
    done
}
wait_for 20 "the cluster is ok" cluster_ok
PORT=${NODES[0]}
"$PY" - "${NODES[0]}" <<'PY' | redis-cli -c -p "${NODES[0]}" >/dev/null
import sys
for i in range(9000):
    print("SET cache:%d v" % i)
for i in range(1000):
    print("HSET igor:jenkins-prod:TEAM-A/SVC-%d:team-a/svc-%d lastPollCycleTimestamp %d" % (i, i, 1526030000000 + i))
PY
sizes() { local p; for p in "${NODES[@]}"; do redis-cli -p "$p" dbsize; done | tr '\n' ' '; }
BEFORE=$(sizes)
for n in $BEFORE; do
    [ "$n" -gt 0 ] || fail "every node holds keys: $BEFORE"
done
echo "# keys per node: $BEFORE"

echo "# inspect and snapshot cover every master"
for p in "${NODES[@]}"; do
    run sg inspect --json --redis "redis://127.0.0.1:$p"
    assert_rc 0 "inspect through the node on $p"
    assert_eq 10000 "$(json_get "$OUT" "d['keys']")" "inspect through $p counts every key"
    assert_eq 3 "$(json_get "$OUT" "d['nodes']")" "of the three masters"
done
run sg inspect
assert_contains "$OUT" "a Cluster: 3 masters" "inspect says it walked a Cluster"
run sg snapshot --json
assert_rc 0 "snapshot of the Cluster"
assert_eq 10000 "$(json_get "$OUT" "d['keys']")" "every key of every master"
run sg snapshots --json
assert_eq 3 "$(json_get "$OUT" "len(d['snapshots'][0]['nodes'])")" "the snapshot records its 3 masters"
assert_eq 10000 "$(json_get "$OUT" "sum(n['keys'] for n in d['snapshots'][0]['nodes'])")" \
    "and the keys taken from each"
for p in "${NODES[@]}"; do
    assert_eq "$(redis-cli -p "$p" dbsize)" \
        "$(json_get "$OUT" "[n['keys'] for n in d['snapshots'][0]['nodes'] if n['address'] == '127.0.0.1:$p'][0]")" \
        "the keys recorded for 127.0.0.1:$p are the ones it holds"
done
assert_eq "0-5460" "$(json_get "$OUT" "d['snapshots'][0]['nodes'][0]['slots']")" "with the slots each served"
run sg snapshot --json --profile igor --redis "redis://127.0.0.1:${NODES[2]}"
assert_rc 0 "snapshot of the Cluster's Igor keys, through another node"
assert_eq 1000 "$(json_get "$OUT" "d['profile_keys']")" "every Igor key of every master"
run sg snapshot --method sync
assert_rc 2 "--method sync on a Cluster"
assert_contains "$ERR" "--method scan" "points to scan"

echo "# slots that move during a snapshot make it fail, not half-kept"
# the third master stalls (CLIENT PAUSE) while the snapshot has read the
# slots and waits for it; meanwhile an empty slot of the first master is
# given to the second (CLUSTER SETSLOT NODE, as a resharding ends)
EMPTY=
for s in $(seq 100 5000); do
    if [ "$(redis-cli -p "${NODES[0]}" cluster countkeysinslot "$s")" = 0 ]; then EMPTY=$s; break; fi
done
[ -n "$EMPTY" ] || fail "an empty slot on the first master"
run sg snapshots --json
COMPLETE=$(json_get "$OUT" "len([x for x in d['snapshots'] if x['state'] == 'complete'])")
redis-cli -p "${NODES[2]}" client pause 3000 ALL >/dev/null
sg snapshot --json --redis "redis://127.0.0.1:${NODES[0]}" >"$TMP/moving.out" 2>"$TMP/moving.err" &
SNAP=$!
sleep 0.8
TO=$(redis-cli -p "${NODES[1]}" cluster myid)
redis-cli -p "${NODES[1]}" cluster setslot "$EMPTY" node "$TO" >/dev/null
redis-cli -p "${NODES[0]}" cluster setslot "$EMPTY" node "$TO" >/dev/null
SNAP_RC=0
wait "$SNAP" || SNAP_RC=$?
assert_eq 1 "$SNAP_RC" "the snapshot fails"
assert_contains "$(cat "$TMP/moving.err")" "slots moved during the snapshot" "saying the slots moved"
run sg snapshots --json
assert_eq "$COMPLETE" "$(json_get "$OUT" "len([x for x in d['snapshots'] if x['state'] == 'complete'])")" \
    "the snapshot it began is not kept as complete"
wait_for 10 "every node agrees where the slot is" \
    sh -c "for p in ${NODES[*]}; do [ \$(redis-cli -p \$p cluster countkeysinslot $EMPTY) = 0 ] || exit 1; done"

echo "# restore puts every key back on the master of its slot"
sg snapshot --json >/dev/null
# one slot half migrated from its master to the next: its keys, gone from
# the source, are ASKed to the target (CLUSTER SETSLOT MIGRATING/IMPORTING)
SLOT=$(redis-cli -p "$PORT" cluster keyslot cache:1)
SRC= DST=
for p in "${NODES[@]}"; do
    if [ "$(redis-cli -p "$p" exists cache:1)" = 1 ]; then SRC=$p; fi
done
for p in "${NODES[@]}"; do
    if [ "$p" != "$SRC" ]; then DST=$p; break; fi
done
redis-cli -p "$DST" cluster setslot "$SLOT" importing "$(redis-cli -p "$SRC" cluster myid)" >/dev/null
redis-cli -p "$SRC" cluster setslot "$SLOT" migrating "$(redis-cli -p "$DST" cluster myid)" >/dev/null
for p in "${NODES[@]}"; do redis-cli -p "$p" flushall >/dev/null; done
run sg restore --json latest
assert_rc 0 "restore into the emptied Cluster"
assert_eq 10000 "$(json_get "$OUT" "d['restored']")" "every key restored"
assert_eq 0 "$(json_get "$OUT" "d['failed']")" "none failed"
assert_contains "$(redis-cli -p "$SRC" exists cache:1)" "ASK" \
    "the migrating slot's key is not on its old master (which ASKs for it)"
assert_contains "$(printf 'ASKING\r\nEXISTS cache:1\r\n' | redis-cli -p "$DST")" "1" \
    "it went where ASK sent it"
# the migration ends: the slot is the target's, with the keys ASK put there
DST_ID=$(redis-cli -p "$DST" cluster myid)
for p in "${NODES[@]}"; do redis-cli -p "$p" cluster setslot "$SLOT" node "$DST_ID" >/dev/null; done
wait_for 10 "every node agrees the slot moved" \
    sh -c "for p in ${NODES[*]}; do redis-cli -p \$p cluster slots | grep -q . || exit 1; done; [ \$(redis-cli -c -p $SRC exists cache:1) = 1 ]"
run sg restore --json latest
assert_eq 10000 "$(json_get "$OUT" "d['skipped_existing']")" "a second restore finds every key in place"
BEFORE=$(sizes)

echo "# flush covers every master"
rcli() { redis-cli -c -p "$PORT" "$@"; }
for i in 1 2 3 4 5; do rcli set "session:$i" x >/dev/null; done
run sg flush --no-announce --match 'session:*' --match 'cache:*'
assert_rc 3 "a flush that would take protected keys is refused"
assert_contains "$ERR" "session:* 5" "it counts the protected keys of every master"
assert_eq "$(($(echo "$BEFORE" | tr ' ' '+' | sed 's/+$//') + 5))" \
    "$(($(sizes | tr ' ' '+' | sed 's/+$//')))" "nothing was deleted"
run sg flush --no-announce --match 'cache:*' --json
assert_rc 0 "flush --match cache:* on the Cluster"
assert_eq 9000 "$(json_get "$OUT" "d['deleted']")" "deleted the cache keys of every master"
assert_eq 0 "$(json_get "$OUT" "d['remaining']")" "none remain on any master"
assert_eq true "$(json_get "$OUT" "d['verified']")" "every master answered"
for p in "${NODES[@]}"; do
    assert_eq "" "$(redis-cli -p "$p" --scan --pattern 'cache:*' | head -1)" "no cache key left on $p"
done
assert_eq 1000 "$(($(for p in "${NODES[@]}"; do redis-cli -p "$p" --scan --pattern 'igor:*' | wc -l; done | paste -sd+)))" \
    "the Igor keys are all still there"
run sg restore --json latest --match 'cache:*'
assert_rc 0 "the pre-flush snapshot restores the cache keys"
assert_eq 9000 "$(json_get "$OUT" "d['restored']")" "all 9000 of them"
run sg flush --no-announce --no-snapshot --match 'cache:*' --json
assert_rc 0 "flush --match without a snapshot (SCAN and UNLINK on every master)"
assert_eq 9000 "$(json_get "$OUT" "d['deleted']")" "deleted every cache key"
assert_eq 0 "$(json_get "$OUT" "d['remaining']")" "none remain"
run sg restore --json latest --match 'cache:*'
assert_eq 9000 "$(json_get "$OUT" "d['restored']")" "the cache keys are back"
run sg flush --no-announce --flushdb --force --json
assert_rc 0 "flush --flushdb --force on the Cluster"
assert_eq 10005 "$(json_get "$OUT" "d['deleted']")" "counts what every master held"
assert_eq "0 0 0 " "$(sizes)" "every master is empty"
run sg restore --json
assert_rc 0 "restore of the pre-flush snapshot"
assert_eq 10005 "$(json_get "$OUT" "d['restored']")" "puts every key back"

echo "# redis:// to a sentinel"
# a free port may be taken by the time the sentinel binds it (the Cluster's
# bus ports are port + 10000): another one then
for attempt in 1 2 3 4 5; do
    SP=$(_sg_free_port)
    printf '%s\n' "port $SP" "bind 127.0.0.1" "dir $TMP" >"$TMP/sentinel.conf"
    redis-server "$TMP/sentinel.conf" --sentinel --logfile "$TMP/sentinel-$SP.log" \
        </dev/null >/dev/null 2>&1 &
    SPID=$!
    bg_track "$SPID"
    for i in $(seq 1 30); do
        redis-cli -p "$SP" ping 2>/dev/null | grep -q PONG && break 2
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.1
    done
    kill "$SPID" 2>/dev/null || true
done
redis-cli -p "$SP" ping | grep -q PONG || fail "no sentinel started"
run sg inspect --redis "redis://127.0.0.1:$SP"
assert_rc 2 "a sentinel is no Redis server"
assert_contains "$ERR" "redis-sentinel://127.0.0.1:$SP#" "names the URL to use"
finish
