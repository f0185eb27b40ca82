#!/usr/bin/env bash
# Requests whose fields the forwarder could not copy on (README, "Bad
# input"): a method that is empty or not a token, a target that is not a
# path or holds bytes outside printable ASCII, a folded header line, a job
# or source name over 1024 bytes. Each gets 400 at the door and leaves
# nothing in the journal or the ledger, so the poller's correct delivery of
# the same build afterwards is a build like any other (it used to be
# journaled, left pending forever, and the correct delivery then suppressed
# as its replay: the build never reached the notifier).
source "$SG_TESTS/lib.sh"

start_sink
start_gate

cat >"$TMP/raw.py" <<'PY'
import socket, sys
port, head, body = int(sys.argv[1]), sys.argv[2].encode("latin-1"), sys.argv[3].encode()
head = head.decode("unicode_escape").encode("latin-1")
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.sendall(head.replace(b"{LEN}", str(len(body)).encode()) + body)
data = b""
while True:
    try:
        chunk = s.recv(65536)
    except (ConnectionResetError, socket.timeout):
        break
    if not chunk:
        break
    data += chunk
status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "-"
print(status, data.split(b"\r\n\r\n", 1)[-1].decode("utf-8", "replace").strip())
PY
B=$(igor_event team-x/svc 42 1526040000000 m1)
# raw HEAD...: sends "HEAD" (\xNN escapes allowed, {LEN} = the body's length)
# and BODY on a new connection; OUT = "status body"
raw() { run "$PY" "$TMP/raw.py" "$GATE_PORT" "$1" "${2:-$B}"; }
refused() { # head msg [what the error says]
    raw "$1"
    assert_eq 400 "${OUT%% *}" "$2: 400"
    [ -z "${3:-}" ] || assert_contains "$OUT" "$3" "$2: the error says why"
}

CL='HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {LEN}\r\nConnection: close\r\n\r\n'
echo "# the method"
refused " / $CL" "an empty method" "method"
refused "\\xff\\xfe / $CL" "method \\xff\\xfe" "method"
refused "P(ST / $CL" "method P(ST" "method"
refused 'P"ST / '"$CL" 'method P"ST' "method"
refused "$(printf 'P%.0s' $(seq 1 33)) / $CL" "a 33-character method" "1 to 32"
echo "# the target"
refused "POST http://x/ $CL" "an absolute-form target" "origin-form"
refused "POST * $CL" "the asterisk-form target" "origin-form"
refused "POST /a\\xe9b $CL" "a target with a raw byte 0xe9" "0xe9"
echo "# headers"
refused "POST / HTTP/1.1\r\nHost: x\r\nX-Note: one\r\n two\r\nContent-Length: {LEN}\r\nConnection: close\r\n\r\n" \
    "a folded header line (obs-fold)" "obs-fold"
refused "POST / HTTP/1.1\r\nHost: x\r\nX-Note: a\x00b\r\nContent-Length: {LEN}\r\nConnection: close\r\n\r\n" \
    "a NUL in a header value"
echo "# names"
gate_post / "$(igor_event "team-x/$(head -c 100000 /dev/zero | tr '\0' j)" 7 1526040000000 m1)" --max-time 10
assert_eq 400 "$HTTP_STATUS" "a 100 KB job name: 400"
assert_contains "$REPLY" "over the limit of 1024" "the error gives the limit"
gate_post / "$(igor_event "team-x/$(head -c 1018 /dev/zero | tr '\0' j)" 7 1526040000000 m1)"
assert_eq 400 "$HTTP_STATUS" "a job name of 1025 bytes: 400"
gate_post / "$(igor_event team-x/ok 7 1526040000000 "$(head -c 1025 /dev/zero | tr '\0' m)")"
assert_eq 400 "$HTTP_STATUS" "a source (master) name of 1025 bytes: 400"
assert_contains "$REPLY" "source name" "the error names the source"
LONGJOB="team-x/$(head -c 1017 /dev/zero | tr '\0' j)"
gate_post / "$(igor_event "$LONGJOB" 7 1526040000000 m1)"
assert_eq 200 "$HTTP_STATUS" "a job name of exactly 1024 bytes: 200"

admin_get "/v1/events?limit=100"
assert_eq "[1024]" "$(json_get "$REPLY" "[len(e['job']) for e in d['events']]")" \
    "the journal holds only the 1024-byte job's event"

echo "# the correct delivery of the build the bad requests named"
gate_post / "$B"
assert_eq 200 "$HTTP_STATUS" "the correct POST: 200"
assert_eq unknown "$(json_get "$REPLY" "d['kind']")" "it is an unknown build, not a replay"
ID=$(json_get "$REPLY" "d['id']")
delivered() { [ "$(sink_py 'print(len(by_id.get(sys.argv[1], [])))' "$ID")" = 1 ]; }
wait_for 10 "the build reaches the sink" delivered
ok "the build reaches the sink once"
raw "POST /a%E9b?x=%20 $CL" '{"ping":1}'
assert_eq 200 "${OUT%% *}" "a target with percent-escapes: 200"
run curl -s -o /dev/null -w '%{http_code}' -X PATCH --data '{}' "$GATE_URL/hooks/x"
assert_eq 200 "$OUT" "another token method (PATCH) on another path: 200"
run curl -s "http://$ADMIN/metrics"
assert_contains "$OUT" "stormguard_http_refused_total 9" "/metrics counts the 9 requests refused at the door"
assert_contains "$OUT" "stormguard_requests_rejected_total 3" "and the 3 events with bad names as rejected"
stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM: exit 0"
finish
