#!/usr/bin/env bash
# Bad input to stormguard run (DESIGN.md, Guarantees: a clear 4xx and no
# trace in the index or ledger): oversized bodies 413, malformed JSON on a
# build path 400 with line and column, absurd build numbers and timestamps
# 400, slow clients disconnected after --read-timeout, truncated requests
# and malformed HTTP leave nothing; the daemon keeps serving throughout. A
# journal that cannot be written (a full tmpfs under the store) gets 503 with
# Retry-After naming the journal, nothing half-written, and recovers when
# space is freed.
source "$SG_TESTS/lib.sh"

start_sink
start_gate --max-body 1k --read-timeout 2s --max-header 2k

# still_serving: a good event is answered 200 at once
still_serving() {
    gate_post /healthcheck '{"ping":true}' --max-time 3
    [ "$HTTP_STATUS" = 200 ] || fail "the gate stopped serving: $HTTP_STATUS $REPLY"
}

echo "# oversized bodies"
BIG=$("$PY" -c 'import json; print(json.dumps({"details": {"type": "git"}, "pad": "x" * 1100}))')
gate_post / "$BIG"
assert_eq 413 "$HTTP_STATUS" "a body over --max-body 1k gets 413"
gate_post / "$BIG" -H 'Transfer-Encoding: chunked'
assert_eq 413 "$HTTP_STATUS" "a chunked body over --max-body gets 413 too"
gate_post / "$(igor_event team-a/x 1 1526040000000)$(printf ' %.0s' $(seq 1 800))"
assert_eq 413 "$HTTP_STATUS" "a valid build event padded over 1k gets 413"

echo "# malformed JSON on the build path"
gate_post / '{"details": {"type": "build"},
  "content": {"master": "m", oops}}'
assert_eq 400 "$HTTP_STATUS" "malformed JSON on / gets 400"
ERRMSG=$(json_get "$REPLY" "d['error']")
assert_contains "$ERRMSG" "line 2" "the error gives the line"
assert_contains "$ERRMSG" "column" "the error gives the column"
gate_post / '{"details":{"type":"build"},"details":{"type":"git"}}'
assert_eq 400 "$HTTP_STATUS" "duplicate keys on / get 400 (ambiguous)"
gate_post / ''
assert_eq 400 "$HTTP_STATUS" "an empty body on / gets 400"

echo "# absurd numbers"
absurd() { # number timestamp msg
    gate_post / "$(igor_event team-a/absurd "$1" "$2")"
    assert_eq 400 "$HTTP_STATUS" "$3 gets 400"
    assert_contains "$(json_get "$REPLY" "d['error']")" "team-a/absurd" "$3: the error names the job"
}
absurd 0 1526040000000 "build number 0"
absurd -5 1526040000000 "build number -5"
absurd 1e30 1526040000000 "build number 1e30"
absurd 1.5 1526040000000 "build number 1.5"
absurd 9007199254740993 1526040000000 "build number 2^53 + 1"
absurd '"abc"' 1526040000000 "build number \"abc\""
absurd null 1526040000000 "build number null"
absurd 7 abc "timestamp \"abc\""
absurd 7 -1 "timestamp -1"
absurd 7 123 "timestamp 123 (1970)"
absurd 7 99999999999999999999 "timestamp beyond int64"
gate_post / '{"name":"asgard","url":"job/asgard/","build":{"number":-1,"phase":"COMPLETED","timestamp":1526040000000}}'
assert_eq 400 "$HTTP_STATUS" "a Notification plugin event with build number -1 gets 400"
gate_post / '{"details":{"type":"build"},"content":{"master":"m","project":{"name":"","lastBuild":{"number":3,"building":false}}}}'
assert_eq 400 "$HTTP_STATUS" "a build event with an empty job name gets 400"

echo "# slow clients, truncated requests, malformed HTTP"
cat >"$TMP/raw.py" <<'PY'
import socket, sys, time
port, mode = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port), timeout=10)
t0 = time.time()
if mode == "stall-body":      # whole headers, part of the body, then silence
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 300\r\n\r\n{\"details\": {\"type\": \"bu")
elif mode == "stall-headers": # part of the headers, then silence
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Le")
elif mode == "trickle":       # a byte per 0.5 s: never complete within the timeout
    try:
        for c in b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}":
            s.sendall(bytes([c]))
            time.sleep(0.5)
    except OSError:
        pass
elif mode == "truncate":      # Content-Length 500, 100 bytes, close
    body = (b'{"details":{"type":"build"},"content":{"master":"m","project":'
            b'{"name":"team-a/truncated","lastBuild":{"number":9,"building":false}}}}')
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n" + body[:100])
    s.close()
    print("closed")
    sys.exit(0)
elif mode == "garbage":
    s.sendall(b"HELLO THERE\r\n\r\n")
elif mode == "bad-length":
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -4\r\n\r\n{}")
elif mode == "big-header":    # a header section over --max-header 2k
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 3000 +
              b"\r\nContent-Length: 2\r\n\r\n{}")
elif mode == "many-headers":  # more headers than the parser takes (100)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n" +
              b"".join(b"X-H%d: v\r\n" % i for i in range(120)) +
              b"Content-Length: 2\r\n\r\n{}")
data = b""
try:
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
except socket.timeout:
    print("still open after %.1f s" % (time.time() - t0))
    sys.exit(0)
except ConnectionResetError:
    pass
status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "-"
print("closed after %.1f s, status %s" % (time.time() - t0, status))
PY
raw() { "$PY" "$TMP/raw.py" "$GATE_PORT" "$@"; }

"$PY" "$TMP/raw.py" "$GATE_PORT" stall-body >"$TMP/slow1.out" 2>&1 &
SLOW1=$!
"$PY" "$TMP/raw.py" "$GATE_PORT" stall-headers >"$TMP/slow2.out" 2>&1 &
SLOW2=$!
bg_track $SLOW1
bg_track $SLOW2
sleep 0.5
T0=$(date +%s%N)
still_serving
assert_le $((($(date +%s%N) - T0) / 1000000)) 1000 "while two clients stall, a good request is answered within 1 s"
wait $SLOW1 || true
wait $SLOW2 || true
SLOW1_OUT=$(cat "$TMP/slow1.out")
SLOW2_OUT=$(cat "$TMP/slow2.out")
assert_contains "$SLOW1_OUT" "closed after" "a client stalling in the body is disconnected"
assert_contains "$SLOW2_OUT" "closed after" "a client stalling in the headers is disconnected"
secs() { sed -n 's/.*closed after \([0-9]*\)\..*/\1/p' <<<"$1"; }
assert_le "$(secs "$SLOW1_OUT")" 4 "within --read-timeout 2s (+2 s): $SLOW1_OUT"
assert_le "$(secs "$SLOW2_OUT")" 4 "within --read-timeout 2s (+2 s): $SLOW2_OUT"
run raw trickle
assert_contains "$OUT" "closed after" "a client trickling a byte per 0.5 s is disconnected"
assert_le "$(secs "$OUT")" 5 "before it completes its request: $OUT"
run raw truncate
assert_eq closed "$OUT" "a truncated request (Content-Length 500, 100 bytes sent, then close)"
run raw garbage
assert_contains "$OUT" "closed after" "a garbage request line is answered and closed: $OUT"
assert_not_contains "$OUT" "status 2" "and not with a 2xx"
assert_contains "$OUT" "status 400" "with 400: $OUT"
run raw bad-length
assert_not_contains "$OUT" "status 2" "a negative Content-Length is not accepted: $OUT"
run raw big-header
assert_contains "$OUT" "status 431" "a header section over --max-header 2k gets 431 and a close: $OUT"
run raw many-headers
assert_contains "$OUT" "status 400" "120 headers get 400 and a close: $OUT"
gate_post / '{}' -H "X-Pad: $(printf 'a%.0s' $(seq 1 2500))"
assert_eq 431 "$HTTP_STATUS" "curl with a 2.5 KB header: 431"
assert_contains "$REPLY" "over the limit of 2048 ([gate] max_header)" "the answer says which limit"
still_serving
ok "the gate still serves after slow, truncated and malformed requests"

# the good requests (still_serving) are pass-through events: count them out
sink_py 'print("\n".join(r["path"] for r in recs))' | sort -u >"$TMP/paths"
assert_eq /healthcheck "$(cat "$TMP/paths")" "the sink got only the good requests"
admin_get "/v1/events?limit=1000"
assert_eq "[]" "$(json_get "$REPLY" "[e for e in d['events'] if e['path'] != '/healthcheck']")" \
    "/v1/events holds none of the bad requests"
ST=$(gate_status)
assert_eq 0 "$(json_get "$ST" "d['ledger']")" "the ledger is empty"
assert_eq 0 "$(json_get "$ST" "sum(v.get('pending', 0) + v.get('forwarded', 0) for k, v in d['counts'].items() if k != 'passthrough')")" \
    "no build event counted"
run curl -s "http://$ADMIN/metrics"
assert_contains "$OUT" "stormguard_requests_rejected_total 16" "/metrics counts the 16 events answered 400"

echo "# after all that, a build is classified and forwarded normally"
gate_post / "$(igor_event team-a/absurd 7 1526040000000)"
assert_eq 200 "$HTTP_STATUS" "the build the absurd events named, with sane numbers: 200"
assert_eq unknown "$(json_get "$REPLY" "d['kind']")" "kind unknown: none of the rejected events made the job known"
GOOD=$(json_get "$REPLY" "d['id']")
has_good() { sink_py 'print(len(by_id.get(sys.argv[1], [])))' "$GOOD" | grep -qx 1; }
wait_for 10 "the good build reaches the sink" has_good
ok "it reaches the sink"
gate_post / "$(igor_event team-a/truncated 9 1526040000000)"
assert_eq unknown "$(json_get "$REPLY" "d['kind']")" "the truncated request's build is not in the ledger"

stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM: exit 0"

echo "# the journal cannot be written: a full disk under the store"
MNT=$TMP/full
mkdir -p "$MNT"
if ! mount -t tmpfs -o size=3m tmpfs "$MNT" 2>/dev/null; then
    echo "# cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): skipping the journal part"
    finish
    exit 0
fi
trap 'rc=$?; kill -9 "$GATE_PID" 2>/dev/null || true; umount -l "$TMP/full" 2>/dev/null || true; (exit $rc); _sg_cleanup' EXIT
: >"$SINK_LOG"
SG_DB=$MNT/sg.db
start_gate --max-body 200k
: >"$TMP/accepted"
post_big() { # n: a 150 KB unknown build event; records id of a 200
    local pad
    pad=$(head -c 150000 /dev/zero | tr '\0' 'x')
    gate_post / "{\"details\":{\"type\":\"build\"},\"pad\":\"$pad\",\"content\":{\"master\":\"m\",\"project\":{\"name\":\"team-f/job-$1\",\"lastBuild\":{\"number\":$1,\"building\":false}}}}"
    if [ "$HTTP_STATUS" = 200 ]; then
        echo "$1 $(json_get "$REPLY" "d['id']")" >>"$TMP/accepted"
    fi
}
post_big 1
assert_eq 200 "$HTTP_STATUS" "a 150 KB event journaled on the tmpfs"
dd if=/dev/zero of="$MNT/filler" bs=64k 2>/dev/null || true
echo "# disk filled: $(df -k "$MNT" | awk 'NR == 2 {print $4}') KB free"
GOT503=
for n in $(seq 2 30); do
    post_big "$n"
    if [ "$HTTP_STATUS" = 503 ]; then
        GOT503=$n
        break
    fi
    [ "$HTTP_STATUS" = 200 ] || fail "post $n on a full disk: expected 200 or 503, got $HTTP_STATUS $REPLY"
done
[ -n "$GOT503" ] || fail "no 503 after 29 posts of 150 KB onto a full 3 MB tmpfs"
ok "a post onto the full disk gets 503 (post $GOT503)"
RETRY_AFTER=$(tr 'A-Z' 'a-z' <<<"$REPLY_HEADERS" | sed -n 's/^retry-after: *\([0-9][0-9]*\) *$/\1/p')
[ -n "$RETRY_AFTER" ] && [ "$RETRY_AFTER" -ge 1 ] || fail "no Retry-After of at least 1 s in: $REPLY_HEADERS"
ok "with a Retry-After header ($RETRY_AFTER s)"
assert_contains "$(json_get "$REPLY" "d['error']")" "journal" "and an error naming the journal"
ST=$(gate_status)
assert_eq false "$(json_get "$ST" "d['journal']['writable']")" "status: journal not writable"
admin_get /readyz
assert_eq 503 "$HTTP_STATUS" "/readyz 503 while the journal cannot be written"
assert_contains "$REPLY" "journal" "/readyz names the journal"
post_big $((GOT503 + 1))
assert_eq 503 "$HTTP_STATUS" "still 503 while the disk is full"

rm -f "$MNT/filler"
post_big "$GOT503"
assert_eq 200 "$HTTP_STATUS" "after freeing space, the refused build is accepted at once"
assert_ne replay "$(json_get "$REPLY" "d['kind']")" "and is not a replay: the refused post left nothing in the ledger"
post_big $((GOT503 + 1))
assert_eq 200 "$HTTP_STATUS" "the other refused build too"
ST=$(gate_status)
assert_eq true "$(json_get "$ST" "d['journal']['writable']")" "status: journal writable again"
NACC=$(wc -l <"$TMP/accepted")
wait_for 10 "all accepted events delivered" sh -c "[ \"\$(curl -sf http://$ADMIN/v1/status | $PY -c 'import json,sys; print(json.load(sys.stdin)[\"pending\"])')\" = 0 ]"
admin_get /readyz
assert_eq 200 "$HTTP_STATUS" "/readyz 200 again"
admin_get "/v1/events?limit=1000"
echo "$REPLY" >"$TMP/events.json"
sink_py '
tmp = sys.argv[1]
acc = dict(l.split() for l in open(tmp + "/accepted"))   # build -> id
events = json.load(open(tmp + "/events.json"))["events"]
errors = []
if sorted(str(e["id"]) for e in events) != sorted(acc.values()):
    errors.append("journal ids %r != accepted %r" % (sorted(e["id"] for e in events), sorted(acc.values())))
for e in events:
    if acc.get(str(e["number"])) != str(e["id"]):
        errors.append("journal row %r is not an accepted post" % e)
got = {}
for r in ok:
    b = json.loads(r["body"])
    got.setdefault(str(b["content"]["project"]["lastBuild"]["number"]), []).append(r["event_id"])
    if len(b["pad"]) != 150000:
        errors.append("event %s delivered with a %d byte pad" % (r["event_id"], len(b["pad"])))
for n, id_ in acc.items():
    if got.get(n) != [id_]:
        errors.append("build %s (id %s) reached the sink as %r" % (n, id_, got.get(n)))
if set(got) - set(acc):
    errors.append("builds never accepted reached the sink: %r" % sorted(set(got) - set(acc)))
print("\n".join(errors) or "ok")
' "$TMP" >"$TMP/verify.out"
assert_eq ok "$(cat "$TMP/verify.out")" "journal and sink hold exactly the $NACC accepted events, whole"
ST=$(gate_status)
assert_eq "$NACC" "$(json_get "$ST" "d['ledger']")" "the ledger holds exactly the $NACC accepted builds"
stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM: exit 0"
assert_eq ok "$("$PY" -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("pragma integrity_check").fetchone()[0])' "$SG_DB")" \
    "the store passes integrity_check"

finish
