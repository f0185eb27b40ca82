#!/usr/bin/env bash
# Redis behind Sentinel, end to end: one master, two replicas and three
# sentinels (redis-server --sentinel), all on free 127.0.0.1 ports. The
# one-shot commands reach the current master through a
# redis-sentinel://...#mymaster URL (a dead sentinel first in the list is
# passed over, an unknown master name is named); the daemon follows a
# SENTINEL FAILOVER (+switch-master) without calling it a wipe (an episode
# records the failover that kept the data), calls a
# failover to a replica that was emptied one (guard mode, cause failover),
# and follows a kill -9 of the master once the sentinels agree.
source "$SG_TESTS/lib.sh"

start_redis
M0=$PORT
start_redis --replicaof 127.0.0.1 "$M0"
R1=$PORT
# never promoted: each failover below has one replica to choose
start_redis --replicaof 127.0.0.1 "$M0" --replica-priority 0
R2=$PORT
PORT=$M0

# Sentinel learns of replicas from the master's INFO, which it reads when it
# connects and then every 10 s: both replicas are online before the
# sentinels start, so the first INFO names them.
replicas_online() { [ "$(redis-cli -p "$M0" info replication | grep -c 'state=online')" = 2 ]; }
wait_for 20 "both replicas are online" replicas_online

# start_sentinel: a sentinel of mymaster on a free port; appends to
# SENTINELS. A port taken between the choice and the bind (tests run in
# parallel) is retried on another.
SENTINELS=()
start_sentinel() {
    local port conf i try pid
    for try in 1 2 3 4 5; do
        port=$(_sg_free_port)
        conf=$TMP/sentinel-$port.conf
        printf '%s\n' "port $port" "bind 127.0.0.1" "dir $TMP" \
            "sentinel monitor mymaster 127.0.0.1 $M0 2" \
            "sentinel down-after-milliseconds mymaster 1000" \
            "sentinel failover-timeout mymaster 6000" \
            "sentinel parallel-syncs mymaster 2" >"$conf"
        redis-server "$conf" --sentinel --logfile "$TMP/sentinel-$port.log" </dev/null >/dev/null 2>&1 &
        pid=$!
        bg_track "$pid"
        _sg_watchdog $$ "$pid" </dev/null >/dev/null 2>&1 &
        bg_track "$!"
        for i in $(seq 1 50); do
            if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
                SENTINELS+=("$port")
                return 0
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        echo "# sentinel on port $port did not start (try $try): $(tail -n 2 "$TMP/sentinel-$port.log" 2>/dev/null || true)"
    done
    fail "no sentinel started in 5 tries"
}
start_sentinel
start_sentinel
start_sentinel
S=${SENTINELS[0]}
master_port() { redis-cli -p "$S" sentinel get-master-addr-by-name mymaster | sed -n 2p; }
replicas_known() { [ "$(redis-cli -p "$S" sentinel master mymaster | sed -n '/^num-slaves$/{n;p}')" = 2 ]; }
others_known() { [ "$(redis-cli -p "$S" sentinel master mymaster | sed -n '/^num-other-sentinels$/{n;p}')" = 2 ]; }
wait_for 30 "the sentinels see both replicas" replicas_known
wait_for 20 "the sentinels see each other" others_known

seed_igor 20
rcli mset cache:1 a cache:2 b >/dev/null
wait_for 10 "the replicas have the keys" \
    sh -c "[ \$(redis-cli -p $R1 dbsize) = 42 ] && [ \$(redis-cli -p $R2 dbsize) = 42 ]"
DEAD=$(_sg_free_port)
URL="redis-sentinel://127.0.0.1:$DEAD,127.0.0.1:${SENTINELS[0]},127.0.0.1:${SENTINELS[1]},127.0.0.1:${SENTINELS[2]}#mymaster"

echo "# one-shot commands act on the master the sentinels name"
run sg snapshot --json --redis "$URL" --connect-timeout 1000
assert_rc 0 "snapshot through the sentinels (the first is down)"
assert_eq 42 "$(json_get "$OUT" "d['keys']")" "every key of the master"
assert_contains "$(json_get "$OUT" "d['redis']")" "redis-sentinel://" "the snapshot names the Sentinel URL"
assert_contains "$(json_get "$OUT" "d['redis']")" "#mymaster" "and the master's name"
run sg flush --no-announce --match 'cache:*' --json --redis "$URL"
assert_rc 0 "flush through the sentinels"
assert_eq 0 "$(rcli exists cache:1 cache:2)" "deleted on the master"
run sg restore --json --redis "$URL" --match 'cache:*'
assert_rc 0 "restore through the sentinels"
assert_eq 2 "$(rcli exists cache:1 cache:2)" "restored on the master"
run sg inspect --redis "${URL%#*}#nosuchmaster" --connect-timeout 1000
assert_rc 1 "an unknown master name"
assert_contains "$ERR" "nosuchmaster" "names the master"
assert_contains "$ERR" "127.0.0.1:$DEAD" "and each sentinel with its reason"
assert_contains "$ERR" "knows no master" "a sentinel that does not know it says so"

echo "# the daemon follows SENTINEL FAILOVER: no wipe"
start_sink
start_gate --redis "$URL" --profile igor --check-interval-ms 200 --guard-duration 1h \
    --snapshot-interval 0 --connect-timeout 2000
st() { json_get "$(gate_status)" "$1"; }
run_id_of() { redis-cli -p "$1" info server | tr -d '\r' | sed -n 's/^run_id://p'; }
link_up() { [ "$(st "d['redis']['link']")" = up ]; }
on_master() { link_up && [ "$(st "d['redis']['run_id']")" = "$(run_id_of "$(master_port)")" ]; }
mode_is() { [ "$(st "d['mode']")" = "$1" ]; }
wait_for 10 "the watcher connects to the master" on_master
assert_eq 1 "$(rcli exists stormguard:canary)" "the canary is on the master"
wait_for 10 "the canary reached the replicas" \
    sh -c "[ \$(redis-cli -p $R1 exists stormguard:canary) = 1 ] && [ \$(redis-cli -p $R2 exists stormguard:canary) = 1 ]"
redis-cli -p "$S" sentinel failover mymaster >/dev/null
wait_for 20 "the sentinels promote a replica" sh -c "[ \$(redis-cli -p $S sentinel get-master-addr-by-name mymaster | sed -n 2p) != $M0 ]"
M1=$(master_port)
wait_for 10 "the watcher follows to the new master $M1" on_master
assert_eq "127.0.0.1:$M1" "$(st "d['redis']['server']")" "the status names the master watched now"
assert_contains "$(cat "$GATE_LOG")" "+switch-master" "the log says the sentinels moved the master"
assert_eq normal "$(st "d['mode']")" "a failover that kept the data is no wipe"
assert_eq 0 "$(st "d['wipes']")" "no wipe counted"
changed() { [ "$(st "d['redis_changes']")" = 1 ]; }
wait_for 5 "the failover is recorded" changed
assert_eq 1 "$(sqlite3 "$SG_DB" "SELECT count(*) FROM episode WHERE cause = 'failover, data kept' AND ended_at IS NOT NULL")" \
    "as an episode of its own, ended as it opened"

echo "# a failover to a replica that was emptied is a wipe"
# the old master, now a replica, loses its data on its own (a replica that
# restarted empty and is promoted before it synced, as one might)
redis-cli -p "$M0" config set replica-read-only no >/dev/null
redis-cli -p "$M0" flushall >/dev/null
redis-cli -p "$S" sentinel failover mymaster >/dev/null
wait_for 20 "the sentinels promote the emptied replica" sh -c "[ \$(redis-cli -p $S sentinel get-master-addr-by-name mymaster | sed -n 2p) = $M0 ]"
wait_for 10 "the watcher follows to $M0" on_master
wait_for 5 "the wipe is noticed" mode_is guard
assert_eq 1 "$(st "d['wipes']")" "one wipe counted"
assert_contains "$(st "d['guard']['reason']")" "failover" "the guard reason names the failover"

echo "# kill -9 of the master: follows once the sentinels agree"
for i in "${!_SG_PORTS[@]}"; do
    if [ "${_SG_PORTS[$i]}" = "$M0" ]; then kill -9 "${_SG_PIDS[$i]}"; fi
done
wait_for 30 "the sentinels replace the dead master" sh -c "[ \$(redis-cli -p $S sentinel get-master-addr-by-name mymaster | sed -n 2p) != $M0 ]"
M2=$(master_port)
wait_for 15 "the watcher follows to $M2" on_master
stop_gate
finish
