#!/usr/bin/env bash
# Nothing hangs ([redis] timeout, --timeout): against a server that accepts
# connections and never answers, snapshot, restore, flush and inspect exit 1
# within the timeout plus a second, naming the address and the command they
# waited on; a flush whose deletes time out says how many keys it deleted
# and which snapshot restores them.
source "$SG_TESTS/lib.sh"

# a port taken between the pick and the bind kills the server: another port
start_silent() {
    local i
    for i in $(seq 1 100); do
        _port_in_use "$SILENT_PORT" && return 0
        kill -0 "$SILENT" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
for attempt in 1 2 3 4 5; do
    SILENT_PORT=$(_sg_free_port)
    "$PY" -c '
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
held = []
deadline = time.time() + 120  # bounded: stops by itself
s.settimeout(1)
while time.time() < deadline:
    try:
        c, _ = s.accept()
        held.append(c)  # read nothing, answer nothing
    except socket.timeout:
        pass
' "$SILENT_PORT" </dev/null >/dev/null 2>&1 &
    SILENT=$!
    bg_track "$SILENT"
    start_silent && break
    kill "$SILENT" 2>/dev/null || true
done
_port_in_use "$SILENT_PORT" || fail "the silent server does not listen (5 attempts)"
URL=redis://127.0.0.1:$SILENT_PORT/0

# timed CMD...: runs it, sets RC, OUT, ERR and SECS (whole seconds it took)
timed() {
    local t0=$SECONDS
    run "$@"
    SECS=$((SECONDS - t0))
}
for cmd in "inspect" "snapshot" "restore latest" "flush --match cache:* --no-announce"; do
    # shellcheck disable=SC2086
    timed sgx $cmd --redis "$URL" --db "$SG_DB" --timeout 2s --connect-timeout 1000
    assert_rc 1 "$cmd against a server that never answers: exit 1"
    assert_le "$SECS" 4 "$cmd: gave up within the 2 s timeout and a second or two ($SECS s)"
    assert_contains "$ERR" "redis 127.0.0.1:$SILENT_PORT did not answer" "$cmd: names the address"
    assert_contains "$ERR" "within 2000 ms ([redis] timeout, --timeout)" "$cmd: and the timeout"
    grep -qE "did not answer [A-Z]+ within" <<<"$ERR" || fail "$cmd: the command waited on is not named: $ERR"
    ok "$cmd: the command waited on is named"
done
timed sgx inspect --redis "$URL" --timeout 1s --json
assert_rc 1 "--json: exit 1"
assert_contains "$(json_get "$OUT" "d['error']")" "did not answer" "--json: the error document says so"
echo "# a flush whose deletes time out says how far it got and how to undo it"
start_redis
pipe_py "[['SET', 'cache:%d' % i, 'v'] for i in range(50)]"
rcli client pause 5000 write >/dev/null # reads answer, UNLINK waits
timed sg flush --no-announce --match 'cache:*' --timeout 1s
assert_rc 1 "a flush whose UNLINK gets no answer: exit 1"
assert_le "$SECS" 3 "it gave up within the timeout ($SECS s)"
assert_contains "$ERR" "stopped after deleting 0 of 50 keys (the pre-flush snapshot" "how far it got"
assert_contains "$ERR" "did not answer UNLINK within 1000 ms" "the command it waited on"
grep -qE "holds them all: stormguard restore [0-9]+\)" <<<"$ERR" || fail "no restore hint: $ERR"
ok "and how to undo it"
rcli client unpause >/dev/null
assert_eq 50 "$(rcli dbsize)" "nothing was deleted"

run sgx config --downstream http://127.0.0.1:1 --timeout 0s
assert_rc 2 "--timeout 0s: exit 2"
finish
