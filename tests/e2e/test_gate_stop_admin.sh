#!/usr/bin/env bash
# The admin API while the gate stops: after SIGTERM the poller's listener is
# closed and freed while the forwarder finishes the deliveries in flight (the
# downstream is slow); an operator's keep-alive connection to the admin
# listener can still ask /v1/status, /metrics and /readyz meanwhile. Each is
# answered (/readyz: 503, shutting down), the gate exits 0, and nothing reads
# the freed listener (this suite runs under AddressSanitizer).
source "$SG_TESTS/lib.sh"

start_sink
sink_set 200 3000 # each delivery takes 3 s: in flight through the stop
start_gate --max-inflight 4
for n in 1 2 3; do
    gate_post / "$(igor_event team/svc-$n $n 1700000000000)"
    assert_eq 200 "$HTTP_STATUS" "build $n accepted"
done
inflight() { [ "$(json_get "$(gate_status)" "d['downstream']['inflight']")" -ge 1 ]; }
wait_for 10 "deliveries in flight" inflight

"$PY" - "$ADMIN" "$GATE_PID" >"$TMP/keepalive.out" 2>&1 <<'PY' || fail "the admin API during the stop: $(cat "$TMP/keepalive.out")"
import http.client, os, signal, sys, time
host, port = sys.argv[1].rsplit(":", 1)
pid = int(sys.argv[2])
c = http.client.HTTPConnection(host, int(port), timeout=10)
c.request("GET", "/healthz")
r = c.getresponse(); r.read()
assert r.status == 200, r.status
os.kill(pid, signal.SIGTERM)
time.sleep(0.3)  # the listener is stopped by now; the deliveries go on
seen = []
# /readyz last: its 503 ends the connection, and the listener takes no new one
for path in ["/v1/status", "/metrics", "/v1/status", "/readyz"]:
    c.request("GET", path)
    r = c.getresponse()
    body = r.read().decode()
    seen.append((path, r.status))
    assert r.status in (200, 503), (path, r.status, body)
    if path == "/readyz":
        assert r.status == 503 and "shutting down" in body, (r.status, body)
print(seen)
PY
echo "# $(cat "$TMP/keepalive.out")"
ok "the admin API answered while the gate stopped"
stop_gate TERM
assert_eq 0 "$GATE_RC" "the gate exits 0 after the stop"
assert_not_contains "$(cat "$GATE_LOG")" "AddressSanitizer" "no memory error in the stop"
finish
