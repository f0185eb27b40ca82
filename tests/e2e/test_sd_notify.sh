#!/usr/bin/env bash
# stormguard run under systemd's notify protocol, with the test as the
# manager: NOTIFY_SOCKET names a unix datagram socket the test reads.
# READY=1 arrives once both listeners accept connections (checked the moment
# it arrives); WATCHDOG=1 every half of WATCHDOG_USEC, and not at all without
# it or when WATCHDOG_PID names another process; SIGHUP sends RELOADING=1
# (with MONOTONIC_USEC) then READY=1; SIGTERM sends STOPPING=1 and exits 0.
source "$SG_TESTS/lib.sh"

start_sink

# notify_listen FILE: a datagram socket at $TMP/notify-N.sock; each message
# is appended to FILE as a JSON line {t, msg, gate_up, admin_up}, the two
# flags saying whether the listeners accepted a connection on READY=1.
_N=0
notify_listen() {
    _N=$((_N + 1))
    NOTIFY_SOCK=$TMP/notify-$_N.sock
    NOTIFY_LOG=$1
    : >"$NOTIFY_LOG"
    "$PY" - "$NOTIFY_SOCK" "$NOTIFY_LOG" <<'EOF' &
import json, os, socket, sys, time
path, log = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
ports = {}
def up(port):
    try:
        socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()
        return True
    except OSError:
        return False
while True:
    msg = s.recv(4096).decode()
    rec = {"t": time.monotonic(), "msg": msg}
    if "READY=1" in msg.split("\n") and os.path.exists(log + ".ports"):
        gate, admin = open(log + ".ports").read().split()
        rec["gate_up"], rec["admin_up"] = up(gate), up(admin)
    with open(log, "a") as f:
        f.write(json.dumps(rec) + "\n")
EOF
    bg_track $!
    wait_for 5 "the notify socket" test -S "$NOTIFY_SOCK"
}

# count MSG: how many messages hold the line MSG
count() {
    "$PY" -c '
import json, sys
print(sum(sys.argv[2] in json.loads(l)["msg"].split("\n") for l in open(sys.argv[1])))' "$NOTIFY_LOG" "$1"
}

echo "# READY=1, WATCHDOG=1"
notify_listen "$TMP/n1.jsonl"
# the listener checks these ports on READY=1: written before each launch
# (start_gate picks other ports when one was taken meanwhile)
gate_ports_chosen() {
    P_GATE=$1
    P_ADMIN=$2
    echo "$P_GATE $P_ADMIN" >"$NOTIFY_LOG.ports"
}
NOTIFY_SOCKET=$NOTIFY_SOCK WATCHDOG_USEC=400000 start_gate
unset -f gate_ports_chosen
wait_for 10 "READY=1" test "$(count READY=1)" -ge 1
READY=$(grep -m1 '"READY=1' "$NOTIFY_LOG")
assert_eq "true true" "$(json_get "$READY" "'%s %s' % (str(d['gate_up']).lower(), str(d['admin_up']).lower())")" \
    "on READY=1 the gate and the admin listener accept connections"
assert_contains "$(json_get "$READY" "d['msg']")" "STATUS=listening on 127.0.0.1:$P_GATE" "READY=1 carries a STATUS"
N0=$(count WATCHDOG=1)
sleep 2
N=$(($(count WATCHDOG=1) - N0))
[ "$N" -ge 5 ] && [ "$N" -le 13 ] || fail "expected about 10 WATCHDOG=1 in 2 s at 200 ms, got $N"
ok "WATCHDOG=1 every 200 ms for WATCHDOG_USEC=400000 ($N in 2 s)"
"$PY" - "$NOTIFY_LOG" <<'EOF' || fail "the median WATCHDOG=1 interval is not about 200 ms"
import json, sys
t = [json.loads(l)["t"] for l in open(sys.argv[1]) if json.loads(l)["msg"] == "WATCHDOG=1"]
gaps = sorted(b - a for a, b in zip(t, t[1:]))
assert len(gaps) >= 5 and 0.15 < gaps[len(gaps) // 2] < 0.3, gaps  # the median
EOF
ok "WATCHDOG=1 intervals: the median about 200 ms"
assert_contains "$(cat "$GATE_LOG")" "systemd watchdog: WATCHDOG=1 every 200 ms" "the log says the watchdog period"

echo "# SIGHUP: RELOADING=1, READY=1"
kill -HUP "$GATE_PID"
wait_for 5 "READY=1 after the reload" test "$(count READY=1)" -ge 2
"$PY" - "$NOTIFY_LOG" <<'EOF' || fail "SIGHUP did not send RELOADING=1 (MONOTONIC_USEC) before the second READY=1"
import json, sys
msgs = [json.loads(l)["msg"] for l in open(sys.argv[1]) if json.loads(l)["msg"] != "WATCHDOG=1"]
i = next(i for i, m in enumerate(msgs) if m.startswith("RELOADING=1"))
assert "\nMONOTONIC_USEC=" in msgs[i], msgs[i]
assert msgs[i + 1] == "READY=1", msgs
EOF
ok "SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1"
admin_get /healthz
assert_eq 200 "$HTTP_STATUS" "still serving after SIGHUP"

echo "# SIGTERM: STOPPING=1"
# counted from here: a launch start_gate retried on other ports (one was
# taken) stopped with a STOPPING=1 of its own
N0=$(count STOPPING=1)
stop_gate TERM
assert_eq 0 "$GATE_RC" "SIGTERM exits 0"
assert_eq 1 "$(($(count STOPPING=1) - N0))" "STOPPING=1 once"
assert_not_contains "$(cat "$GATE_LOG")" "handles still open" "the watchdog's timer closed with the rest"

echo "# no watchdog unless asked for this process"
notify_listen "$TMP/n2.jsonl"
NOTIFY_SOCKET=$NOTIFY_SOCK start_gate
wait_for 10 "READY=1 (no watchdog)" test "$(count READY=1)" -ge 1
sleep 0.6
assert_eq 0 "$(count WATCHDOG=1)" "no WATCHDOG_USEC: no WATCHDOG=1"
stop_gate TERM
notify_listen "$TMP/n3.jsonl"
NOTIFY_SOCKET=$NOTIFY_SOCK WATCHDOG_USEC=200000 WATCHDOG_PID=1 start_gate
wait_for 10 "READY=1 (another pid's watchdog)" test "$(count READY=1)" -ge 1
sleep 0.6
assert_eq 0 "$(count WATCHDOG=1)" "WATCHDOG_PID of another process: no WATCHDOG=1"
stop_gate TERM

finish
