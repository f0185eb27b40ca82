#!/usr/bin/env bash
# The admin API of stormguard run and the commands that read it: /v1/status
# fields, /v1/events filters, /metrics, /healthz, /readyz; the bearer token
# (--admin-token, --admin-token-file) and `stormguard status` / `events` with
# and without it; startup refusals (a non-loopback admin API without a
# token, no --downstream, a listen port in use); SIGTERM exits 0 and logs
# "stopped", even with an idle keep-alive client connected.
source "$SG_TESTS/lib.sh"

start_redis
seed_igor 3
run sg snapshot --profile igor --json
assert_rc 0 "snapshot --profile igor"
SNAP=$(json_get "$OUT" "d['snapshot_id']")

start_sink
start_gate

echo "# /v1/status"
admin_get /v1/status
assert_eq 200 "$HTTP_STATUS" "/v1/status without a configured token: 200"
ST=$REPLY
assert_eq normal "$(json_get "$ST" "d['mode']")" "mode normal"
assert_eq "['new', 'passthrough', 'replay', 'unknown']" "$(json_get "$ST" "str(sorted(d['counts']))")" \
    "counts by kind"
assert_eq 0 "$(json_get "$ST" "d['pending']")" "pending 0"
assert_eq true "$(json_get "$ST" "d['journal']['writable']")" "journal.writable"
assert_eq 0 "$(json_get "$ST" "d['journal']['depth']")" "journal.depth 0"
assert_eq "$SINK_URL" "$(json_get "$ST" "d['downstream']['url']")" "downstream.url"
assert_eq true "$(json_get "$ST" "d['downstream']['healthy']")" "downstream.healthy"
assert_eq "0 0" "$(json_get "$ST" "'%d %d' % (d['downstream']['inflight'], d['downstream']['backlog'])")" \
    "downstream.inflight and backlog 0"
assert_eq "$SNAP 3" "$(json_get "$ST" "'%d %d' % (d['snapshot']['id'], d['snapshot']['jobs'])")" \
    "snapshot: id $SNAP, 3 jobs"
assert_eq 0 "$(json_get "$ST" "d['ledger']")" "ledger 0"

gate_post / "$(igor_event team-a/service-1 101 1526040000000)"
assert_eq replay "$(json_get "$REPLY" "d['kind']")" "a posted build: replay"
gate_post / "$(igor_event team-a/service-1 500 1526040000000)"
assert_eq new "$(json_get "$REPLY" "d['kind']")" "a build beyond the cursor: new"
NEW_ID=$(json_get "$REPLY" "d['id']")
gate_post / "$(igor_event team-q/other 1 1526040000000)"
assert_eq unknown "$(json_get "$REPLY" "d['kind']")" "an unknown job"
gate_post /x '{"details":{"type":"git"}}'
assert_eq passthrough "$(json_get "$REPLY" "d['kind']")" "a pass-through event"
pending0() { [ "$(json_get "$(gate_status)" "d['pending']")" = 0 ]; }
wait_for 10 "the 3 forwardable events delivered" pending0
ST=$(gate_status)
assert_eq '{"new": {"forwarded": 1}, "passthrough": {"forwarded": 1}, "replay": {"suppressed": 1}, "unknown": {"forwarded": 1}}' \
    "$(json_get "$ST" "d['counts']")" "counts by kind and state"
assert_eq 2 "$(json_get "$ST" "d['ledger']")" "ledger 2 (the new and the unknown build)"
assert_ne null "$(json_get "$ST" "d['downstream']['last_ok']")" "downstream.last_ok set"

echo "# /v1/events"
admin_get /v1/events
assert_eq 200 "$HTTP_STATUS" "/v1/events"
assert_eq 4 "$(json_get "$REPLY" "len(d['events'])")" "4 events"
assert_eq true "$(json_get "$REPLY" "[e['id'] for e in d['events']] == sorted([e['id'] for e in d['events']], reverse=True)")" \
    "newest first"
admin_get "/v1/events?kind=new"
assert_eq "$NEW_ID" "$(json_get "$REPLY" "','.join(str(e['id']) for e in d['events'])")" "?kind=new"
admin_get "/v1/events?state=suppressed"
assert_eq "replay posted marker in snapshot" "$(json_get "$REPLY" "' '.join([d['events'][0]['kind'], d['events'][0]['reason']])")" \
    "?state=suppressed: the replay, with its reason"
admin_get "/v1/events?job=team-a/service-1&limit=1"
assert_eq "1 500" "$(json_get "$REPLY" "'%d %d' % (len(d['events']), d['events'][0]['number'])")" "?job=...&limit=1"
admin_get "/v1/events?kind=bogus"
assert_eq 400 "$HTTP_STATUS" "?kind=bogus: 400"
admin_get "/v1/events?limit=0"
assert_eq 400 "$HTTP_STATUS" "?limit=0: 400"
run sgx events --admin "$ADMIN" --json
assert_rc 0 "stormguard events --json"
assert_eq 4 "$(json_get "$OUT" "len(d['events'])")" "stormguard events lists the 4 events"
run sgx events --admin "$ADMIN" --kind replay
assert_rc 0 "stormguard events --kind replay"
assert_contains "$OUT" "team-a/service-1" "text output names the job"
assert_contains "$OUT" "posted marker" "and the reason"

gate_post / "$(igor_event 'team q/my job+1%' 3 1526040000000)"
assert_eq 200 "$HTTP_STATUS" "a job whose name holds a space, '+' and '%'"
run sgx events --admin "$ADMIN" --job 'team q/my job+1%' --json
assert_rc 0 "stormguard events --job 'team q/my job+1%'"
assert_eq "['team q/my job+1%']" "$(json_get "$OUT" "str([e['job'] for e in d['events']])")" \
    "finds exactly that job's event"
admin_get '/v1/events?job=team%20q/my%20job%2B1%25'
assert_eq "['team q/my job+1%']" "$(json_get "$REPLY" "str([e['job'] for e in d['events']])")" \
    "/v1/events?job= percent-decodes the job"

echo "# stormguard status"
run sgx status --admin "$ADMIN" --json
assert_rc 0 "stormguard status --json"
assert_eq normal "$(json_get "$OUT" "d['mode']")" "prints /v1/status"
run sgx status --admin "$ADMIN"
assert_rc 0 "stormguard status"
assert_contains "$OUT" "journal: writable" "text: the journal"
assert_contains "$OUT" "healthy" "text: the downstream"
assert_contains "$OUT" "snapshot $SNAP" "text: the baseline"

echo "# /metrics, /healthz, /readyz"
admin_get /metrics
assert_eq 200 "$HTTP_STATUS" "/metrics"
assert_contains "$REPLY_HEADERS" "text/plain" "/metrics is text/plain"
assert_contains "$REPLY" 'stormguard_events_received_total{kind="new"} 1' "stormguard_events_received_total by kind"
assert_contains "$REPLY" '# TYPE stormguard_journal_commit_seconds histogram' "the commit histogram"
assert_contains "$REPLY" 'stormguard_journal_commit_seconds_bucket{le="+Inf"} 5' "its +Inf bucket counts the 5 commits"
assert_contains "$REPLY" 'stormguard_journal_commit_seconds_count 5' "and its count"
admin_get /healthz
assert_eq 200 "$HTTP_STATUS" "/healthz 200"
admin_get /readyz
assert_eq 200 "$HTTP_STATUS" "/readyz 200"
assert_eq true "$(json_get "$REPLY" "d['ready']")" "/readyz ready true"
admin_get /nope
assert_eq 404 "$HTTP_STATUS" "an unknown admin path: 404"
_sg_curl "http://$ADMIN/v1/status" -X POST -d '{}'
assert_eq 405 "$HTTP_STATUS" "POST /v1/status: 405"

echo "# SIGTERM with an idle keep-alive client"
"$PY" -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
s.recv(4096)
time.sleep(20)
' "$GATE_PORT" </dev/null >/dev/null 2>&1 &
IDLE=$!
bg_track $IDLE
sleep 0.5
T0=$(date +%s)
stop_gate TERM
assert_eq 0 "$GATE_RC" "SIGTERM: exit 0"
assert_le $(($(date +%s) - T0)) 5 "stopped within --read-timeout 2s (+3 s) despite the idle connection"
assert_contains "$(cat "$GATE_LOG")" "stopped" "the log says stopped"
kill $IDLE 2>/dev/null || true

echo "# a bearer token"
start_gate --admin-token secret
admin_get /v1/status
assert_eq 401 "$HTTP_STATUS" "/v1/status without the token: 401"
admin_get /v1/events
assert_eq 401 "$HTTP_STATUS" "/v1/events without the token: 401"
admin_get /v1/status -H 'Authorization: Bearer wrong'
assert_eq 401 "$HTTP_STATUS" "with a wrong token: 401"
admin_get /v1/status -H 'Authorization: Bearer secretsecret'
assert_eq 401 "$HTTP_STATUS" "with a longer token that starts like it: 401"
admin_get /v1/status -H 'Authorization: Bearer secret'
assert_eq 200 "$HTTP_STATUS" "with Authorization: Bearer secret: 200"
admin_get /healthz
assert_eq 200 "$HTTP_STATUS" "/healthz needs no token"
run sgx status --admin "$ADMIN" --admin-token secret --json
assert_rc 0 "stormguard status --admin-token secret"
assert_eq normal "$(json_get "$OUT" "d['mode']")" "prints the status"
run sgx status --admin "$ADMIN" --admin-token wrong
assert_rc 2 "stormguard status with a wrong token: exit 2"
assert_contains "$ERR" "token" "the message is about the token"
assert_contains "$ERR" "$ADMIN" "and names the admin API"
run sgx status --admin "$ADMIN"
assert_rc 2 "stormguard status without the token: exit 2"
assert_contains "$ERR" "token" "the message is about the token"
echo secret >"$TMP/token"
run sgx events --admin "$ADMIN" --admin-token-file "$TMP/token" --json
assert_rc 0 "stormguard events --admin-token-file"
stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM: exit 0"

echo "secret2" >"$TMP/token2"
start_gate --admin-token-file "$TMP/token2"
ADMIN_TOKEN=secret2 admin_get /v1/status
assert_eq 200 "$HTTP_STATUS" "--admin-token-file: its token is accepted"
admin_get /v1/status -H 'Authorization: Bearer secret'
assert_eq 401 "$HTTP_STATUS" "and another is not"
admin_get /v1/status -H 'Authorization: bearer secret2'
assert_eq 200 "$HTTP_STATUS" "the scheme name in lower case (RFC 9110 11.1: case-insensitive): 200"
admin_get /v1/status -H 'Authorization: BEARER   secret2'
assert_eq 200 "$HTTP_STATUS" "in upper case, with several spaces before the token: 200"
admin_get /v1/status -H 'Authorization: Basic secret2'
assert_eq 401 "$HTTP_STATUS" "another scheme with the right token: 401"
stop_gate
printf '  secret3 \t\r\nsecond line\n' >"$TMP/token3"
start_gate --admin-token-file "$TMP/token3"
ADMIN_TOKEN=secret3 admin_get /v1/status
assert_eq 200 "$HTTP_STATUS" "a token file's first line is the token, without the blanks around it"
run sgx status --admin "$ADMIN" --admin-token-file "$TMP/token3" --json
assert_rc 0 "stormguard status reads the token file the same way"
stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM: exit 0"

echo "# startup refusals"
P1=$(_sg_free_port)
P2=$(_sg_free_port)
run timeout 20 "$SG_BIN" run --db "$SG_DB" --downstream "$SINK_URL" --listen "127.0.0.1:$P1" --admin "0.0.0.0:$P2"
assert_rc 2 "a non-loopback --admin without a token: exit 2"
assert_contains "$ERR" "0.0.0.0:$P2" "the message names the address"
assert_contains "$ERR" "token" "and asks for a token"
run timeout 20 "$SG_BIN" run --db "$SG_DB" --listen "127.0.0.1:$P1" --admin "127.0.0.1:$P2"
assert_rc 2 "no --downstream: exit 2"
assert_contains "$ERR" "downstream" "the message asks for --downstream"
run timeout 20 "$SG_BIN" run --db "$SG_DB" --downstream "$SINK_URL" --listen "127.0.0.1:$SINK_PORT" --admin "127.0.0.1:$P2"
assert_rc 1 "a --listen port in use: exit 1"
assert_contains "$ERR" "127.0.0.1:$SINK_PORT" "the message names the address"
run timeout 20 "$SG_BIN" run --db "$SG_DB" --downstream "$SINK_URL" --listen "127.0.0.1:$P1" --admin "127.0.0.1:$P2" --admin-token-file "$TMP/no-such-file"
assert_rc 2 "a missing --admin-token-file: exit 2"
assert_contains "$ERR" "$TMP/no-such-file" "the message names the file"
: >"$TMP/empty-token"
run timeout 20 "$SG_BIN" run --db "$SG_DB" --downstream "$SINK_URL" --listen "127.0.0.1:$P1" --admin "127.0.0.1:$P2" --admin-token-file "$TMP/empty-token"
assert_rc 2 "an empty --admin-token-file: exit 2"
assert_contains "$ERR" "empty" "the message says it is empty"
printf '   \t \n' >"$TMP/blank-token"
run timeout 20 "$SG_BIN" run --db "$SG_DB" --downstream "$SINK_URL" --listen "127.0.0.1:$P1" --admin "127.0.0.1:$P2" --admin-token-file "$TMP/blank-token"
assert_rc 2 "an --admin-token-file of blanks only: exit 2"
assert_contains "$ERR" "blank-token holds no token" "the message names the file and says it holds no token"
run timeout 20 "$SG_BIN" run --db "$SG_DB" --downstream "$SINK_URL" --listen "127.0.0.1:$P1" --admin "127.0.0.1:$P2" --admin-token ' '
assert_rc 2 "an --admin-token of blanks: exit 2"
run timeout 20 "$SG_BIN" run --db "$SG_DB" --downstream "http://echo:pa55w0rd-xyz@127.0.0.1:9/" --listen "127.0.0.1:$P1" --admin "127.0.0.1:$P2"
assert_rc 2 "a --downstream with user:password@: exit 2"
assert_contains "$ERR" "no user" "the message says a user is not allowed"
assert_not_contains "$ERR$OUT" "pa55w0rd-xyz" "and does not print the password"
assert_not_contains "$ERR$OUT" "echo:" "nor the user"
run timeout 20 "$SG_BIN" run --db "$SG_DB" --downstream "http://127.0.0.1:9/hook?token=t0ps3cret" --listen "127.0.0.1:$P1" --admin "127.0.0.1:$P2"
assert_rc 2 "a --downstream with a query: exit 2"
assert_not_contains "$ERR$OUT" "t0ps3cret" "the message does not print the query, which may hold a secret"

echo "# a non-loopback admin API with a token starts"
start_gate --admin "0.0.0.0:$P2" --admin-token secret
assert_eq "127.0.0.1:$P2" "$ADMIN" "reached on 127.0.0.1:$P2"
ADMIN_TOKEN=secret admin_get /v1/status
assert_eq 200 "$HTTP_STATUS" "--admin 0.0.0.0 with a token: /v1/status with the token 200"
admin_get /v1/status
assert_eq 401 "$HTTP_STATUS" "and 401 without"
stop_gate INT
assert_eq 0 "$GATE_RC" "SIGINT: exit 0"
assert_contains "$(cat "$GATE_LOG")" "stopped" "the log says stopped"

finish
