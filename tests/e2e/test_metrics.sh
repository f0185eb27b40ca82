#!/usr/bin/env bash
# /metrics of a live `stormguard run`, scraped and checked by Prometheus's
# own linter (`promtool check metrics`, Debian's prometheus package), and
# the gauges the alert rules and the dashboard read (deploy/): the build
# info, the process_* family, the last good snapshot, the journal's and the
# downstream's health, and the ages of the oldest pending and held events,
# which grow while an event waits, survive a restart, and drop to 0 when
# nothing waits.
source "$SG_TESTS/lib.sh"
command -v promtool >/dev/null || fail "promtool not found (scripts/setup.sh installs prometheus)"

metrics() { curl -sf --max-time 10 "http://$ADMIN/metrics"; }
# metric NAME: the value of the unlabelled sample NAME (or NAME{...} given whole)
metric() {
    metrics | "$PY" -c '
import sys
name = sys.argv[1]
for line in sys.stdin:
    if line.startswith("#"):
        continue
    key, _, value = line.rstrip("\n").rpartition(" ")
    if key == name:
        print(value)
        sys.exit(0)
sys.exit(1)
' "$1"
}
# check EXPR MSG: a python expression over the floats v (metric values) true
check() { "$PY" -c "import sys; v = [float(x) for x in sys.argv[1:]]; sys.exit(0 if ($1) else 1)" "${@:3}" \
    || fail "$2 (values: ${*:3})"; ok "$2"; }
gt_metric() { [ "$("$PY" -c 'import sys; print(float(sys.argv[1]) > float(sys.argv[2]))' "$(metric "$1")" "$2")" = True ]; }
eq_metric() { [ "$(metric "$1")" = "$2" ]; }
now() { date +%s.%N; }

start_redis
seed_igor 3
start_sink
start_gate --redis "redis://127.0.0.1:$PORT" --profile igor

echo "# promtool check metrics"
wait_for 15 "the first periodic snapshot" gt_metric stormguard_snapshot_last_good_timestamp_seconds 0
wait_for 5 "the first read of /proc" metric process_open_fds
metrics >"$TMP/scrape.txt"
run promtool check metrics <"$TMP/scrape.txt"
assert_rc 0 "promtool check metrics: exit 0"
assert_eq "" "$OUT$ERR" "promtool check metrics: no complaint"

echo "# the build, the process"
run sgx version --json
assert_rc 0 "stormguard version --json"
VERSION=$(json_get "$OUT" "d['stormguard']")
assert_eq 1 "$(metric "stormguard_build_info{version=\"$VERSION\"}")" \
    "stormguard_build_info{version=\"$VERSION\"} 1, the version stormguard version prints"
check 'v[0] > 1e6 and v[1] >= v[0]' "process_resident_memory_bytes > 1 MB, virtual >= resident" \
    "$(metric process_resident_memory_bytes)" "$(metric process_virtual_memory_bytes)"
check '3 <= v[0] <= v[1]' "3 <= process_open_fds <= process_max_fds" \
    "$(metric process_open_fds)" "$(metric process_max_fds)"
check 'v[1] - 60 < v[0] <= v[1] + 1' "process_start_time_seconds: within the last minute" \
    "$(metric process_start_time_seconds)" "$(now)"
check 'v[0] > 0' "process_cpu_seconds_total > 0" "$(metric process_cpu_seconds_total)"
# read a second ago at most, while connections come and go
check 'abs(v[0] - v[1]) <= 4' "process_open_fds: about the descriptors /proc/PID/fd lists" \
    "$(ls /proc/"$GATE_PID"/fd | wc -l)" "$(metric process_open_fds)"

echo "# the last good snapshot"
check 'v[1] - 30 < v[0] <= v[1]' "stormguard_snapshot_last_good_timestamp_seconds: close to now" \
    "$(metric stormguard_snapshot_last_good_timestamp_seconds)" "$(now)"
KEYS=$(sqlite3 "$SG_DB" "SELECT key_count FROM snapshot WHERE state = 'complete' ORDER BY id DESC LIMIT 1")
assert_eq "$KEYS" "$(metric stormguard_snapshot_last_good_keys)" \
    "stormguard_snapshot_last_good_keys: the snapshot's key count ($KEYS)"
assert_eq 60 "$(metric stormguard_snapshot_interval_seconds)" "stormguard_snapshot_interval_seconds 60"
assert_eq 1 "$(metric stormguard_journal_writable)" "stormguard_journal_writable 1"
assert_eq 1 "$(metric stormguard_downstream_up)" "stormguard_downstream_up 1"
assert_eq 0 "$(metric stormguard_held_oldest_age_seconds)" "nothing held: held age 0"
assert_eq 0 "$(metric stormguard_pending_oldest_age_seconds)" "nothing pending: pending age 0"

echo "# held: the age grows while an event is held"
"$SG_BIN" guard on --admin "$ADMIN" --reason test >/dev/null || fail "guard on"
gate_post / "$(igor_event team-q/unknown 1 1526040000000)"
assert_eq unknown/held "$(json_get "$REPLY" "d['kind'] + '/' + d['state']")" "guard mode: an unknown build is held"
A1=$(metric stormguard_held_oldest_age_seconds)
sleep 2
gate_post / "$(igor_event team-q/unknown2 1 1526040000000)"
A2=$(metric stormguard_held_oldest_age_seconds)
check '0 <= v[0] < 2 and v[1] >= v[0] + 1.9' "held age grows with the oldest held event ($A1 -> $A2)" "$A1" "$A2"
assert_eq 2 "$(metric stormguard_held)" "stormguard_held 2"

echo "# the held age survives a restart (read from the store)"
stop_gate
restart_gate
wait_for 10 "the held age after the restart" gt_metric stormguard_held_oldest_age_seconds "$A2"
# held_age_is_oldest: the gauge is the age of the oldest held row of the store (+-1 s)
held_age_is_oldest() {
    local at
    at=$(sqlite3 "$SG_DB" "SELECT min(received_at) FROM event WHERE state = 'held'")
    "$PY" -c 'import sys, time; sys.exit(0 if abs(time.time() - float(sys.argv[1]) / 1000 - float(sys.argv[2])) <= 1 else 1)' \
        "$at" "$(metric stormguard_held_oldest_age_seconds)"
}
held_age_is_oldest || fail "after the restart, the held age is the oldest held event's"
ok "after the restart, the held age is the oldest held event's"
run "$SG_BIN" release --admin "$ADMIN" --job team-q/unknown
assert_rc 0 "release the oldest held event's job"
wait_for 10 "the held age follows the next oldest held event" held_age_is_oldest
run "$SG_BIN" release --admin "$ADMIN" --all
assert_rc 0 "release --all"
wait_for 10 "nothing held: held age 0" eq_metric stormguard_held_oldest_age_seconds 0

echo "# pending: the age grows while the downstream refuses"
sink_set 503
gate_post / "$(igor_event team-a/service-1 900 1526040000000)"
assert_eq new/pending "$(json_get "$REPLY" "d['kind'] + '/' + d['state']")" "a new build, pending"
wait_for 10 "a failed delivery marks the downstream down" eq_metric stormguard_downstream_up 0
P1=$(metric stormguard_pending_oldest_age_seconds)
sleep 2
P2=$(metric stormguard_pending_oldest_age_seconds)
check 'v[1] >= v[0] + 1.9' "pending age grows while the event waits ($P1 -> $P2)" "$P1" "$P2"
metrics >"$TMP/scrape2.txt"
run promtool check metrics <"$TMP/scrape2.txt"
assert_eq "0:" "$RC:$OUT$ERR" "promtool check metrics, events held and pending: clean"
sink_set 200
wait_for 30 "delivered: pending age 0" eq_metric stormguard_pending_oldest_age_seconds 0
wait_for 5 "the downstream is up again" eq_metric stormguard_downstream_up 1

stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM: exit 0"
finish
