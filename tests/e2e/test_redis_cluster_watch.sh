#!/usr/bin/env bash
# The daemon watching a Redis Cluster of three masters, each with a replica
# (redis-cli --cluster create on free 127.0.0.1 ports), named by one node's
# redis:// URL. It watches every master with a canary of that master's
# slots; its periodic snapshot covers every master. A manual failover
# (CLUSTER FAILOVER on a replica) and a kill -9 of a master are followed:
# the promoted replica's watcher finds the canary it inherited, which is a
# failover that kept the data (an episode, redis_changes), no wipe. A
# replica emptied and then promoted is a wipe (cause failover), rewarmed. A
# FLUSHALL on one master is a wipe naming that master: guard mode, and the
# rewarm puts that master's keys back. An announced flush of every master
# is one operator's flush: no rewarm.
source "$SG_TESTS/lib.sh"

NODES=()
for i in 1 2 3 4 5 6; do
    start_redis --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 1000
    NODES+=("$PORT")
done
redis-cli --cluster create "${NODES[@]/#/127.0.0.1:}" --cluster-replicas 1 --cluster-yes \
    >"$TMP/create.log" 2>&1 || { cat "$TMP/create.log" >&2; fail "redis-cli --cluster create"; }
cluster_ok() {
    local p
    for p in "${NODES[@]}"; do
        redis-cli -p "$p" cluster info | grep -q "cluster_state:ok" || return 1
    done
}
wait_for 30 "the cluster is ok" cluster_ok
PORT=${NODES[0]}
URL="redis://127.0.0.1:$PORT"
# the ports of the masters now, by first slot
masters() {
    redis-cli -p "$PORT" cluster nodes | awk '$3 ~ /master/ && $3 !~ /fail/ && $9 != "" {
        split($2, a, "@"); n = split(a[1], b, ":"); split($9, s, "-"); print s[1], b[n] }' |
        sort -n | awk '{print $2}'
}
MASTERS=($(masters))
[ "${#MASTERS[@]}" = 3 ] || fail "three masters: ${MASTERS[*]}"
# 30 Igor keys: fewer than the watcher's sample, so every one is in it
N=30
"$PY" - <<'PY' | redis-cli -c -p "$PORT" >/dev/null
for i in range(30):
    print("HSET igor:jenkins-prod:TEAM-A/SVC-%d:team-a/svc-%d lastPollCycleTimestamp %d" % (i, i, 1526030000000 + i))
PY
igor_on() { redis-cli -p "$1" --scan --pattern 'igor:*' | wc -l; }

st() { json_get "$(gate_status)" "$1"; }
all_armed() {
    [ "$(st "d['redis']['link']")" = up ] &&
        [ "$(st "len(d['redis']['masters'])")" = 3 ] &&
        [ "$(st "all(m['armed'] for m in d['redis']['masters'])")" = true ]
}
start_sink

echo "# a daemon started on a store with a snapshot watches its keys on every master"
run sg snapshot --profile igor --redis "$URL"
assert_rc 0 "a snapshot of the Cluster's Igor keys"
start_gate --redis "$URL" --profile igor --check-interval-ms 200 --snapshot-interval 0 \
    --connect-timeout 1000
wait_for 15 "every master is watched and armed" all_armed
assert_eq "$N" "$(st "sum(m['sample'] for m in d['redis']['masters'])")" \
    "the baseline's keys are split among the masters that hold them"
stop_gate

start_gate --redis "$URL" --profile igor --check-interval-ms 200 --guard-duration 1h \
    --snapshot-interval 1h --rewarm yes --connect-timeout 1000
wait_for 15 "every master is watched and armed" all_armed
assert_eq "Redis Cluster, 3 masters" "$(st "d['redis']['server']")" "the status names the Cluster"
assert_eq "0-5460" "$(st "d['redis']['masters'][0]['slots']")" "and each master's slots"
for p in "${MASTERS[@]}"; do
    assert_eq 1 "$(redis-cli -p "$p" --scan --pattern 'stormguard:canary{*}' | wc -l)" \
        "one canary on master $p, in its own slots"
done
good_snapshot() { [ "$(st "d['snapshot'] and d['snapshot']['keys']")" = "$N" ] &&
    [ "$(st "d['snapshot']['reason']")" != manual ]; }
wait_for 15 "the periodic snapshot covers every master" good_snapshot

echo "# a manual failover keeps the data: no wipe"
M0=${MASTERS[0]}
REPLICA=$(redis-cli -p "$PORT" cluster nodes | awk -v id="$(redis-cli -p "$M0" cluster myid)" \
    '$4 == id { split($2, a, "@"); n = split(a[1], b, ":"); print b[n] }')
[ -n "$REPLICA" ] || fail "master $M0 has a replica"
wait_for 10 "the replica holds the master's keys" \
    sh -c "[ \$(redis-cli -p $REPLICA dbsize) = \$(redis-cli -p $M0 dbsize) ]"
redis-cli -p "$REPLICA" cluster failover >/dev/null
wait_for 15 "the replica is master" sh -c "redis-cli -p $REPLICA role | head -1 | grep -q master"
follows() { [ "$(st "d['redis']['masters'][0]['address']")" = "127.0.0.1:$REPLICA" ] &&
    [ "$(st "d['redis']['masters'][0]['armed']")" = true ]; }
wait_for 15 "the watcher follows to the promoted replica" follows
changed() { [ "$(st "d['redis_changes']")" = 1 ]; }
wait_for 5 "the failover is recorded" changed
assert_eq normal "$(st "d['mode']")" "a failover that kept the data is no wipe"
assert_eq 0 "$(st "d['wipes']")" "no wipe counted"
assert_eq 1 "$(sqlite3 "$SG_DB" "SELECT count(*) FROM episode WHERE cause = 'failover, data kept' AND ended_at IS NOT NULL AND detail LIKE '%127.0.0.1:$REPLICA%took over from 127.0.0.1:$M0%'")" \
    "an episode says the promoted replica took over and kept the data"

echo "# kill -9 of a master: its replica takes over, the data kept"
M2=${MASTERS[2]}
replica_of() {
    redis-cli -p "$PORT" cluster nodes | awk -v id="$(redis-cli -p "$1" cluster myid)" \
        '$4 == id { split($2, a, "@"); n = split(a[1], b, ":"); print b[n] }'
}
R2=$(replica_of "$M2")
[ -n "$R2" ] || fail "master $M2 has a replica"
wait_for 10 "the replica holds the master's keys" \
    sh -c "[ \$(redis-cli -p $R2 dbsize) = \$(redis-cli -p $M2 dbsize) ]"
for i in "${!_SG_PORTS[@]}"; do
    if [ "${_SG_PORTS[$i]}" = "$M2" ]; then kill -9 "${_SG_PIDS[$i]}"; fi
done
link_down() { [ "$(st "d['redis']['link']")" = down ]; }
wait_for 5 "the link is down while a master is" link_down
follows2() { [ "$(st "d['redis']['masters'][2]['address']")" = "127.0.0.1:$R2" ] &&
    [ "$(st "d['redis']['link']")" = up ]; }
wait_for 20 "the watcher follows to the replica promoted by the Cluster" follows2
changed2() { [ "$(st "d['redis_changes']")" = 2 ]; }
wait_for 5 "that failover is recorded too" changed2
assert_eq normal "$(st "d['mode']")" "still no wipe"
assert_eq 0 "$(st "d['wipes']")" "none counted"
PORT=${MASTERS[1]} # a node that is up, for the cluster's view

echo "# a failover to a replica that was emptied is a wipe"
M0=$REPLICA
R0=$(replica_of "$M0")
wait_for 10 "the old master is the new one's replica" \
    sh -c "[ \$(redis-cli -p $R0 dbsize) = \$(redis-cli -p $M0 dbsize) ]"
# the replica loses its data on its own (as one that restarted empty and
# is promoted before it synced might)
redis-cli -p "$R0" config set replica-read-only no >/dev/null
redis-cli -p "$R0" flushall >/dev/null
assert_eq 0 "$(redis-cli -p "$R0" dbsize)" "the replica is empty"
redis-cli -p "$R0" cluster failover force >/dev/null
mode_is() { [ "$(st "d['mode']")" = "$1" ]; }
wait_for 20 "the promotion of the empty replica is a wipe" mode_is guard
assert_eq "127.0.0.1:$R0" "$(st "d['redis']['masters'][0]['address']")" "watched in its master's place"
assert_eq 1 "$(st "d['wipes']")" "one wipe"
assert_contains "$(st "d['guard']['reason']")" "failover" "the guard reason names the failover"
assert_contains "$(st "d['guard']['reason']")" "took over from 127.0.0.1:$M0" "and the master it replaced"
MASTERS=($(masters))
all_igor() { [ "$(($(for p in "${MASTERS[@]}"; do igor_on "$p"; done | paste -sd+)))" = "$N" ]; }
wait_for 15 "the rewarm puts every Igor key back" all_igor

echo "# FLUSHALL on one master is a wipe, rewarmed"
M1=${MASTERS[1]}
N1=$(igor_on "$M1")
redis-cli -p "$M1" flushall >/dev/null
wipes_are() { [ "$(st "d['wipes']")" = "$1" ]; }
wait_for 5 "the wipe is noticed" wipes_are 2
assert_contains "$(cat "$GATE_LOG")" "Redis wiped (flush): master 127.0.0.1:$M1 " "the wipe names the master"
rewarmed() { [ "$(igor_on "$M1")" = "$N1" ]; }
wait_for 15 "the rewarm puts that master's $N1 Igor keys back" rewarmed
wait_for 5 "the rewarm is logged" grep -q "rewarmed $N1 keys" "$GATE_LOG"

echo "# a FLUSHALL during a slot migration is seen"
# one Igor key of a master moves to the next master, its slot left
# MIGRATING: the watcher's EXISTS of it is answered ASK
MX=${MASTERS[0]} MY=${MASTERS[1]}
CSLOT=$(redis-cli -p "$MX" cluster keyslot "$(st "d['redis']['masters'][0]['canary']")")
K=
for key in $(redis-cli -p "$MX" --scan --pattern 'igor:*'); do
    if [ "$(redis-cli -p "$MX" cluster keyslot "$key")" != "$CSLOT" ]; then K=$key; break; fi
done
[ -n "$K" ] || fail "an Igor key on $MX outside its canary's slot"
KSLOT=$(redis-cli -p "$MX" cluster keyslot "$K")
redis-cli -p "$MY" cluster setslot "$KSLOT" importing "$(redis-cli -p "$MX" cluster myid)" >/dev/null
redis-cli -p "$MX" cluster setslot "$KSLOT" migrating "$(redis-cli -p "$MY" cluster myid)" >/dev/null
assert_eq OK "$(redis-cli -p "$MX" migrate 127.0.0.1 "$MY" "$K" 0 5000)" "the key migrated"
assert_contains "$(redis-cli -p "$MX" exists "$K")" "ASK" "its old master ASKs for it"
sleep 0.5 # a check or two meet the ASK
redis-cli -p "$MX" flushall >/dev/null
wait_for 5 "the wipe is noticed though a sample key is elsewhere" wipes_are 3
assert_contains "$(cat "$GATE_LOG")" "Redis wiped (flush): master 127.0.0.1:$MX " "on that master"
for p in "${MASTERS[@]}"; do
    redis-cli -p "$p" cluster setslot "$KSLOT" node "$(redis-cli -p "$MY" cluster myid)" >/dev/null
done
wait_for 15 "the rewarm puts every Igor key back" all_igor

echo "# an announced flush of every master is the operator's: no rewarm"
run sg flush --flushdb --force --redis "$URL" --admin "$ADMIN" --json
assert_rc 0 "flush --flushdb through the daemon"
three_wipes() { [ "$(st "d['wipes']")" = 6 ]; }
wait_for 5 "each master's flush is seen" three_wipes
assert_eq 3 "$(grep -c "announced by stormguard flush" "$GATE_LOG")" \
    "all three are the announced flush"
sleep 2
for p in $(masters); do
    assert_eq 0 "$(igor_on "$p")" "no rewarm on master $p"
done
stop_gate
finish
