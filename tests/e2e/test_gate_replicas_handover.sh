#!/usr/bin/env bash
# The replica holding the watcher's lock cannot reach Redis (its network,
# its DNS, a firewall the others do not have): after 10 s it gives the lock
# up, another replica that reaches Redis takes it and watches, and the first
# does not take it back while that one holds it. Two redis-servers stand for
# one Redis reached by two routes: replica 1's route is cut by stopping the
# server it reaches.
source "$SG_TESTS/lib.sh"
SG_STORE_BACKEND=pg
start_postgres
start_redis
PORT_1=$PORT
start_redis
PORT_2=$PORT
start_sink

ARGS=(--check-interval-ms 200 --snapshot-interval 0)
watched() { replica_use "$1"; [ "$(json_get "$(gate_status)" "isinstance(d['redis'], dict) and d['redis'].get('link') == 'up'")" = true ]; }
watched_elsewhere() { replica_use "$1"; [ "$(json_get "$(gate_status)" "d['redis']")" = "watched by another replica" ]; }

start_gate --redis "redis://127.0.0.1:$PORT_1" "${ARGS[@]}"
replica_save 1
wait_for 15 "replica 1 takes the watcher's lock and watches Redis" watched 1
start_gate --redis "redis://127.0.0.1:$PORT_2" "${ARGS[@]}"
replica_save 2
sleep 3 # replica 2 asks for the lock every 2 s
watched_elsewhere 2 || fail "replica 2's status: $(replica_use 2; gate_status)"
ok "replica 2 leaves the watching to replica 1"

echo "# Redis out of replica 1's reach"
stop_redis "$PORT_1"
T0=$(date +%s)
wait_for 25 "replica 2 takes the lock and watches" watched 2
echo "# replica 2 watches $(($(date +%s) - T0)) s after replica 1 lost Redis"
assert_contains "$(cat "${R_LOG[1]}")" "gives the watcher's lock up" \
    "replica 1 says it gave the lock up, and why"
assert_contains "$(cat "${R_LOG[2]}")" "holds the watcher's lock" "replica 2 says it holds the lock"
sleep 8 # replica 1 asks again 6 s after it gave the lock up
watched 2 || fail "replica 2 stopped watching: $(replica_use 2; gate_status)"
watched_elsewhere 1 || fail "replica 1's status: $(replica_use 1; gate_status)"
ok "replica 1 does not take the lock back while replica 2 holds it"
finish
