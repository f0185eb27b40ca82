#!/usr/bin/env bash
# What the downstream receives from stormguard run's forwarder (README,
# "forwarded on the same event loop"): the poller's method, path, query,
# headers and body, under the downstream URL's own path; Host and
# Content-Length of its own (a chunked request arrives with a length), no
# header that would change the framing, X-Stormguard-Event-Id; a host name
# is resolved; an https:// downstream is verified against SSL_CERT_FILE and
# the URL's name, and refused (retried, the reason reported) when the
# certificate names another host.
source "$SG_TESTS/lib.sh"

start_sink
start_gate --downstream "http://localhost:$SINK_PORT/echo/" --forward-header '*'

echo "# a build event, chunked, with headers the downstream must not see"
BODY=$(igor_event team-h/app 7 1526040000000)
printf '%s' "$BODY" >"$TMP/chunked.body"
_sg_curl "$GATE_URL/webhooks/igor?x=1&y=%20" -X POST -H 'Content-Type: application/json' \
    -H 'Transfer-Encoding: chunked' -H 'X-Trace: abc-123' -H 'User-Agent: igor/1.0' \
    -H 'Keep-Alive: timeout=5' -H 'Expect:' --data-binary "@$TMP/chunked.body"
assert_eq 200 "$HTTP_STATUS" "a chunked build event accepted"
ID=$(json_get "$REPLY" "d['id']")
delivered() { [ "$(sink_count)" -ge "$1" ]; }
wait_for 10 "the event delivered" delivered 1
sink_py 'r = ok[0]; print(json.dumps([r["method"], r["path"], r["event_id"], r["len"], r["body"]]))' >"$TMP/first"
assert_eq "$(printf '["POST", "/echo/webhooks/igor?x=1&y=%%20", "%s", %d, %s]' "$ID" "${#BODY}" \
    "$("$PY" -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$BODY")")" "$(cat "$TMP/first")" \
    "method, the URL's path + path and query, event id and body as posted"
hdr() { sink_py 'print(ok[0]["headers"].get(sys.argv[1], "-"))' "$1"; }
assert_eq "localhost:$SINK_PORT" "$(hdr host)" "Host is the downstream's"
assert_eq "${#BODY}" "$(hdr content-length)" "a Content-Length of the body's length"
assert_eq - "$(hdr transfer-encoding)" "no Transfer-Encoding passed on"
assert_eq - "$(hdr keep-alive)" "no Keep-Alive passed on"
assert_eq abc-123 "$(hdr x-trace)" "an allowed header passed on"
assert_eq igor/1.0 "$(hdr user-agent)" "the poller's User-Agent passed on"
assert_eq application/json "$(hdr content-type)" "its Content-Type passed on"

echo "# a GET without a body, and a client without a User-Agent"
_sg_curl "$GATE_URL/status?probe=1" -H 'User-Agent:'
assert_eq 200 "$HTTP_STATUS" "a GET accepted (pass-through)"
wait_for 10 "the GET delivered" delivered 2
assert_eq '["GET", "/echo/status?probe=1", 0, "stormguard", "-"]' \
    "$(sink_py 'r = ok[1]; print(json.dumps([r["method"], r["path"], r["len"], r["headers"].get("user-agent"), r["headers"].get("content-length", "-")]))')" \
    "a GET keeps its query, gets no body and stormguard's User-Agent"
stop_gate

echo "# https: verified against SSL_CERT_FILE and the name in the URL"
command -v openssl >/dev/null || fail "openssl not found (scripts/setup.sh installs it)"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -keyout "$TMP/tls.key" -out "$TMP/tls.crt" \
    >/dev/null 2>&1 || fail "openssl could not make a test certificate"
SINK_TLS=$TMP/tls.crt:$TMP/tls.key start_sink
export SSL_CERT_FILE=$TMP/tls.crt
start_gate --downstream "https://localhost:$SINK_PORT" --retry-base-ms 100 --retry-max 1s
gate_post / "$(igor_event team-h/tls 1 1526040000000)"
assert_eq 200 "$HTTP_STATUS" "event accepted"
TLS_ID=$(json_get "$REPLY" "d['id']")
wait_for 10 "the event delivered over TLS" delivered 1
assert_eq "$TLS_ID" "$(sink_py 'print(ok[0]["event_id"])')" "the sink got it over TLS"
stop_gate

# the certificate names localhost, the URL 127.0.0.1
start_gate --downstream "https://127.0.0.1:$SINK_PORT" --retry-base-ms 100 --retry-max 1s
gate_post / "$(igor_event team-h/tls-mismatch 1 1526040000000)"
assert_eq 200 "$HTTP_STATUS" "event accepted"
failing() { [ "$(json_get "$(gate_status)" "d['downstream']['healthy']")" = false ]; }
wait_for 10 "the downstream reported unhealthy" failing
assert_contains "$(json_get "$(gate_status)" "d['downstream']['last_error']")" "127.0.0.1:$SINK_PORT" \
    "last_error names the downstream"
assert_contains "$(json_get "$(gate_status)" "d['downstream']['last_error']")" "IP address mismatch" \
    "and the certificate's mismatch"
assert_eq 1 "$(sink_count)" "nothing delivered to a host whose certificate names another"
assert_eq 1 "$(json_get "$(gate_status)" "d['pending']")" "the event stays pending"
stop_gate
unset SSL_CERT_FILE

echo "# a name that does not resolve: retried, the reason reported"
start_gate --downstream "http://no-such-host.invalid:$SINK_PORT" --retry-base-ms 100 --retry-max 1s
gate_post / "$(igor_event team-h/nowhere 1 1526040000000)"
assert_eq 200 "$HTTP_STATUS" "event accepted"
wait_for 10 "the downstream reported unhealthy" failing
assert_contains "$(json_get "$(gate_status)" "d['downstream']['last_error']")" \
    "cannot resolve no-such-host.invalid" "last_error says the name does not resolve"
stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM with a delivery failing: exit 0"

echo "# a Retry-After beyond max_age (or any clock) waits no longer than max_age"
unset SINK_TLS
start_sink
for ra in 99999999999 "Fri, 31 Dec 9999 23:59:59 GMT"; do
    sink_set 503 0 "$ra"
    start_gate --forward-max-age 2s --retry-base-ms 100 --retry-max 1s
    gate_post / "$(igor_event team-h/throttled 1 1526040000000)"
    assert_eq 200 "$HTTP_STATUS" "event accepted (Retry-After: $ra)"
    dead_one() { admin_get "/v1/events?state=dead"; [ "$(json_get "$REPLY" "len(d['events'])")" = 1 ]; }
    wait_for 10 "the event dead after max_age despite Retry-After: $ra" dead_one
    stop_gate
    assert_eq 0 "$GATE_RC" "SIGTERM: exit 0"
    rm -f "$SG_DB" "$SG_DB-wal" "$SG_DB-shm"
done

echo "# a bad downstream URL is refused at startup"
for url in "ftp://x" "http://" "http://h:0" "http://h:99999" "http://u@h" "http://h?q" "http://[::1"; do
    run "$SG_BIN" run --db "$TMP/bad.db" --downstream "$url" --listen 127.0.0.1:0 --admin 127.0.0.1:0 --watch off
    assert_rc 2 "--downstream $url refused"
    assert_contains "$ERR" "downstream" "the message names the downstream"
done

finish
