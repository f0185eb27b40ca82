#!/usr/bin/env bash
# Guard mode across replicas whose clocks disagree: replica 2 runs two
# minutes ahead (libfaketime). The modes' times go into the store in the
# server's clock and come back in each replica's own, so a guard mode one
# replica turns on lasts its duration at the other too: were they stored
# in the first replica's clock, replica 2 would read a mode that ended
# a minute ago (and stay normal), and replica 1 one lasting three minutes.
source "$SG_TESTS/lib.sh"
SG_STORE_BACKEND=pg
FAKETIME_LIB=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
[ -e "$FAKETIME_LIB" ] || skip "libfaketime is missing (scripts/setup.sh installs faketime)"
start_postgres
start_sink

ARGS=(--guard-duration 60s)
start_gate "${ARGS[@]}"
replica_save 1
# only replica 2's wall clock moves; its monotonic clock (timers) stays true
export FAKETIME=+120 FAKETIME_DONT_FAKE_MONOTONIC=1 LD_PRELOAD=$FAKETIME_LIB
_SG_OLD_ASAN=${ASAN_OPTIONS:-}
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0
start_gate "${ARGS[@]}"
replica_save 2
unset FAKETIME FAKETIME_DONT_FAKE_MONOTONIC LD_PRELOAD
ASAN_OPTIONS=$_SG_OLD_ASAN

mode_of() { replica_use "$1"; json_get "$(gate_status)" "d['mode']"; }
in_guard() { [ "$(mode_of "$1")" = guard ]; }
in_normal() { [ "$(mode_of "$1")" = normal ]; }
# seconds from this machine's true time to replica R's guard until
until_in() {
    replica_use "$1"
    json_get "$(gate_status)" "int(__import__('datetime').datetime.fromisoformat(d['guard']['until'].replace('Z', '+00:00')).timestamp() - __import__('time').time())"
}
ms() { echo $(($(date +%s%N) / 1000000)); }

# each replica's listener connects at its first tick: the 1 s below is
# NOTIFY's, not the next read of the table
listening() { [ "$(psql_q "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN stormguard_mode'")" = 2 ]; }
wait_for 10 "both replicas listen for mode changes" listening

echo "# guard on at replica 1: replica 2 (ahead) in guard mode within 1 s, for the same 60 s"
run "$SG_BIN" guard on --admin "${R_ADMIN[1]}" --reason "skew test"
assert_rc 0 "guard on at replica 1"
T0=$(ms)
wait_for 5 "replica 2 in guard mode" in_guard 2
T1=$(ms)
assert_le $((T1 - T0)) 1000 "replica 2 follows within 1 s"
U1=$(until_in 1) U2=$(until_in 2)
echo "# guard until: replica 1 in ${U1}s, replica 2 in ${U2}s of this machine's time"
assert_le "$U1" 61 "replica 1's guard mode lasts its 60 s"
assert_le 50 "$U1" "replica 1's guard mode lasts its 60 s"
assert_le 170 "$U2" "replica 2 reads the until in its own clock (120 s ahead)"
assert_le "$U2" 181 "replica 2 reads the until in its own clock (120 s ahead)"

run "$SG_BIN" guard off --admin "${R_ADMIN[2]}"
assert_rc 0 "guard off at replica 2"
wait_for 5 "replica 1 back to normal" in_normal 1
ok "guard off at the replica ahead ends guard mode at the other"

echo "# guard on at replica 2 (ahead): replica 1 in guard mode for 60 s, not 180"
sleep 1 # a new mode begins after the off
run "$SG_BIN" guard on --admin "${R_ADMIN[2]}" --reason "skew test, ahead"
assert_rc 0 "guard on at replica 2"
wait_for 5 "replica 1 in guard mode" in_guard 1
U1=$(until_in 1)
echo "# guard until at replica 1: in ${U1}s"
assert_le 50 "$U1" "replica 1's guard mode from replica 2 lasts 60 s"
assert_le "$U1" 61 "replica 1's guard mode from replica 2 lasts 60 s, not 180"
finish
