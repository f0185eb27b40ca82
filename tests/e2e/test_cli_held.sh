#!/usr/bin/env bash
# The operator commands of the held queue and guard mode (held, release, drop,
# guard) and the flush announce, against a fake admin API: a python3 server
# that answers what the test tells it to and records every request (method,
# path, headers, JSON body). Checks the requests the CLI sends (bearer token,
# actor, selectors), its output and exit codes (2 for a usage error or a 400,
# 1 when the daemon is unreachable or fails, 3 for a refusal), and that a
# flush deletes nothing until the daemon confirmed guard mode (a real
# redis-server holds the keys), unless --no-announce.
source "$SG_TESTS/lib.sh"

FAKE_LOG=$TMP/fake.jsonl
FAKE_CTL=$TMP/fake.json
cat >"$TMP/fake_admin.py" <<'PY'
import json, os, subprocess, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log_path, ctl_path, port_path = sys.argv[1:4]
lock = threading.Lock()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def any(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n > 0 else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = {"unparsable": raw.decode("utf-8", "replace")}
        try:
            with open(ctl_path) as f:
                routes = json.load(f)
        except (OSError, ValueError):
            routes = {}
        route = routes.get("%s %s" % (self.command, self.path))
        status, answer, probe = 404, '{"error":"no such route"}', None
        if route:
            status, answer = route["status"], route["body"]
            if route.get("probe"):
                # what the world looked like when the request arrived
                probe = subprocess.run(route["probe"], shell=True, capture_output=True,
                                       text=True).stdout.strip()
        rec = {"method": self.command, "path": self.path,
               "headers": {k.lower(): v for k, v in self.headers.items()},
               "body": body, "probe": probe}
        with lock:
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
        out = answer.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = any

    def log_message(self, *args):
        pass

srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
srv.daemon_threads = True
with open(port_path + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(port_path + ".tmp", port_path)
srv.serve_forever()
PY

"$PY" "$TMP/fake_admin.py" "$FAKE_LOG" "$FAKE_CTL" "$TMP/fake.port" </dev/null >"$TMP/fake.out" 2>&1 &
FAKE_PID=$!
bg_track $FAKE_PID
_sg_watchdog $$ $FAKE_PID </dev/null >/dev/null 2>&1 &
bg_track $!
for i in $(seq 1 100); do
    [ -s "$TMP/fake.port" ] && break
    sleep 0.1
done
[ -s "$TMP/fake.port" ] || { cat "$TMP/fake.out" >&2; fail "the fake admin API did not start"; }
FAKE=127.0.0.1:$(cat "$TMP/fake.port")
echo "# fake admin API pid $FAKE_PID on $FAKE"

# route 'METHOD PATH' STATUS BODY [PROBE]: how the fake answers from now on
# (routes accumulate; PROBE is a shell command whose output is recorded).
route() {
    "$PY" - "$FAKE_CTL" "$@" <<'PY'
import json, sys
path, key, status, body = sys.argv[1:5]
try:
    routes = json.load(open(path))
except (OSError, ValueError):
    routes = {}
routes[key] = {"status": int(status), "body": body,
               "probe": sys.argv[5] if len(sys.argv) > 5 else None}
json.dump(routes, open(path + ".tmp", "w"))
PY
    mv -f "$FAKE_CTL.tmp" "$FAKE_CTL"
}
# reqs: forget the requests recorded so far
reqs_reset() { : >"$FAKE_LOG"; }
# req_count: requests recorded since the last reqs_reset
req_count() { wc -l <"$FAKE_LOG" | tr -d ' '; }
# last_req EXPR: EXPR over r, the last request recorded
last_req() {
    "$PY" -c '
import json, sys
lines = open(sys.argv[1]).read().splitlines()
r = json.loads(lines[-1])
v = eval(sys.argv[2])
print(json.dumps(v, sort_keys=True) if isinstance(v, (dict, list, bool)) or v is None else v)
' "$FAKE_LOG" "$1"
}

export USER=tester
ACTOR=tester@$(hostname)
# sga CMD ...: a command against the fake, with the token
sga() { "$SG_BIN" "$@" --admin "$FAKE" --admin-token tok; }

echo "# held"
HELD='{"held": 7, "jobs_total": 3, "jobs": [{"source": "travis", "job": "org/lib", "count": 1, "oldest": 9, "newest": 9}, {"source": "jenkins-prod", "job": "team-b/api", "count": 2, "oldest": 40, "newest": 41}, {"source": "jenkins-prod", "job": "team-a/web", "count": 4, "oldest": 100, "newest": 104}]}'
route "GET /v1/held?limit=100" 200 "$HELD"
reqs_reset
run sga held
assert_rc 0 "held"
assert_eq "GET /v1/held?limit=100" "$(last_req "r['method'] + ' ' + r['path']")" "held: GET /v1/held, the top 100 jobs"
assert_eq "Bearer tok" "$(last_req "r['headers'].get('authorization')")" "held sends the bearer token"
assert_eq "SOURCE JOB HELD OLDEST NEWEST" "$(echo "$OUT" | sed -n 1p | tr -s ' ')" "held: the header row"
assert_eq "jenkins-prod team-a/web 4 100 104" "$(echo "$OUT" | sed -n 2p | tr -s ' ')" "held: rows by source, then job"
assert_eq "jenkins-prod team-b/api 2 40 41" "$(echo "$OUT" | sed -n 3p | tr -s ' ')" "held: the second job of the source"
assert_eq "travis org/lib 1 9 9" "$(echo "$OUT" | sed -n 4p | tr -s ' ')" "held: the other source"
assert_eq "7 events held in 3 jobs" "$(echo "$OUT" | sed -n 5p)" "held: the total"
run sga held --json
assert_rc 0 "held --json"
assert_eq "$HELD" "$OUT" "held --json prints the daemon's document as is"
route "GET /v1/held?limit=2" 200 '{"held": 7, "jobs_total": 3, "jobs": [{"source": "jenkins-prod", "job": "team-b/api", "count": 2, "oldest": 40, "newest": 41}, {"source": "jenkins-prod", "job": "team-a/web", "count": 4, "oldest": 100, "newest": 104}]}'
run sga held --limit 2
assert_rc 0 "held --limit 2"
assert_eq "GET /v1/held?limit=2" "$(last_req "r['method'] + ' ' + r['path']")" "held --limit 2 asks for 2 jobs"
assert_eq "7 events held in 3 jobs (shown: the 2 with the most; --limit N for more)" \
    "$(echo "$OUT" | tail -n 1)" "held says when it lists only some jobs"
for bad in 0 10001 x; do
    run sga held --limit $bad
    assert_rc 2 "held --limit $bad is a usage error"
    assert_contains "$OUT$ERR" "--limit must be a number from 1 to 10000" "held --limit $bad says why"
done
route "GET /v1/held?limit=100" 200 '{"held": 0, "jobs_total": 0, "jobs": []}'
run sga held
assert_rc 0 "held with nothing held"
assert_eq "nothing held" "$OUT" "held says nothing is held"
run "$SG_BIN" held --admin "$FAKE"
assert_eq "null" "$(last_req "r['headers'].get('authorization')")" "no token configured: no Authorization header"

echo "# release"
route "POST /v1/release" 200 '{"released": 5, "superseded": 3}'
reqs_reset
run sga release --all
assert_rc 0 "release --all"
assert_eq "released 5 events (3 older builds superseded)" "$OUT" "release prints what the daemon released"
assert_eq "POST /v1/release" "$(last_req "r['method'] + ' ' + r['path']")" "release: POST /v1/release"
assert_eq "{\"actor\": \"$ACTOR\", \"all\": true, \"job\": null, \"newest_only\": false, \"source\": null}" \
    "$(last_req "r['body']")" "release --all: the body names all and the actor"
assert_eq "Bearer tok" "$(last_req "r['headers'].get('authorization')")" "release sends the bearer token"
assert_eq "application/json" "$(last_req "r['headers'].get('content-type')")" "release sends JSON"
run sga release --source jenkins-prod --job 'team-a/*' --newest-only
assert_rc 0 "release --source --job --newest-only"
assert_eq "{\"actor\": \"$ACTOR\", \"all\": false, \"job\": \"team-a/*\", \"newest_only\": true, \"source\": \"jenkins-prod\"}" \
    "$(last_req "r['body']")" "release: source, job glob and newest_only in the body"
run sga release --job 'team b/*'
assert_rc 0 "release --job alone"
assert_eq "[false, null, \"team b/*\"]" "$(last_req "[r['body']['all'], r['body']['source'], r['body']['job']]")" \
    "release --job: only the job glob"
route "POST /v1/release" 200 '{"released": 1, "superseded": 0}'
run sga release --source travis --json
assert_rc 0 "release --json"
assert_eq '{"released": 1, "superseded": 0}' "$OUT" "release --json prints the daemon's answer as is"
N=$(req_count)
run sga release
assert_rc 2 "release without a selector: exit 2"
assert_contains "$ERR" "--all, --source SOURCE or --job GLOB" "the message names the selectors"
run sga release --all --job 'x*'
assert_rc 2 "release --all with --job: exit 2"
assert_eq "$N" "$(req_count)" "no request sent for a usage error"

echo "# drop"
route "POST /v1/drop" 200 '{"dropped": 4}'
reqs_reset
run sga drop --job 'team-a/*'
assert_rc 2 "drop without --reason: exit 2"
assert_contains "$ERR" "--reason" "the message asks for --reason"
run sga drop --reason "replays"
assert_rc 2 "drop without a selector: exit 2"
assert_eq 0 "$(req_count)" "drop sent no request for either usage error"
run sga drop --all --reason "replays of the 04:00 flush"
assert_rc 0 "drop --all --reason"
assert_eq "dropped 4 events" "$OUT" "drop prints what the daemon dropped"
assert_eq "POST /v1/drop" "$(last_req "r['method'] + ' ' + r['path']")" "drop: POST /v1/drop"
assert_eq "{\"actor\": \"$ACTOR\", \"all\": true, \"job\": null, \"reason\": \"replays of the 04:00 flush\", \"source\": null}" \
    "$(last_req "r['body']")" "drop: the body names all, the reason and the actor"
run sga drop --source jenkins-prod --job 'team-a/*' --reason old
assert_rc 0 "drop --source --job --reason"
assert_eq '[false, "jenkins-prod", "team-a/*", "old"]' \
    "$(last_req "[r['body'][k] for k in ('all', 'source', 'job', 'reason')]")" "drop: the selector in the body"

echo "# guard"
route "POST /v1/guard" 200 '{"mode": "guard", "uptime_s": 5}'
route "DELETE /v1/guard" 200 '{"mode": "normal", "uptime_s": 6}'
reqs_reset
run sga guard on --reason "maintenance"
assert_rc 0 "guard on"
assert_eq "mode guard" "$OUT" "guard on prints the resulting mode"
assert_eq "POST /v1/guard" "$(last_req "r['method'] + ' ' + r['path']")" "guard on: POST /v1/guard"
assert_eq "{\"actor\": \"$ACTOR\", \"reason\": \"maintenance\"}" "$(last_req "r['body']")" "guard on: reason and actor"
run sga guard off
assert_rc 0 "guard off"
assert_eq "mode normal" "$OUT" "guard off prints the resulting mode"
assert_eq "DELETE /v1/guard" "$(last_req "r['method'] + ' ' + r['path']")" "guard off: DELETE /v1/guard"
assert_eq "{\"actor\": \"$ACTOR\", \"reason\": \"manual\"}" "$(last_req "r['body']")" "guard off: default reason manual"
run sga guard off --json
assert_eq '{"mode": "normal", "uptime_s": 6}' "$OUT" "guard --json prints the status document"
route "DELETE /v1/guard" 200 '{"mode": "guard"}'
run sga guard off
assert_rc 0 "guard off while the daemon keeps guard mode"
assert_contains "$OUT" "mode guard" "it prints the mode the daemon is in"
assert_contains "$OUT" "stayed in guard mode" "and says it stayed"
N=$(req_count)
run sga guard
assert_rc 2 "guard without on|off: exit 2"
run sga guard sideways
assert_rc 2 "guard sideways: exit 2"
assert_eq "$N" "$(req_count)" "no request for a usage error"

echo "# error answers"
route "POST /v1/release" 400 '{"error":"say what to release: all, source or job"}'
run sga release --all
assert_rc 2 "a 400 answer: exit 2"
assert_contains "$ERR" "say what to release: all, source or job" "the daemon's error text is shown"
assert_contains "$ERR" "$FAKE" "and the admin address"
route "POST /v1/drop" 500 '{"error":"journal not writable: disk full"}'
run sga drop --all --reason x
assert_rc 1 "a 500 answer: exit 1"
assert_contains "$ERR" "journal not writable: disk full" "the daemon's error text is shown"
route "POST /v1/guard" 409 '{"error":"a wipe episode is in progress"}'
run sga guard on
assert_rc 3 "a 409 answer: exit 3 (refused)"
assert_contains "$ERR" "a wipe episode is in progress" "the daemon's reason is shown"
route "GET /v1/held?limit=100" 401 '{"error":"unauthorized"}'
run sga held
assert_rc 2 "a 401 answer: exit 2"
assert_contains "$ERR" "token" "the message is about the token"
route "GET /v1/held?limit=100" 200 'not json'
run sga held
assert_rc 1 "an answer that is not JSON: exit 1"
assert_contains "$ERR" "invalid JSON" "the message says so"
run "$SG_BIN" held --admin "$FAKE" --admin-token-file "$TMP/no-such-token"
assert_rc 2 "a missing token file: exit 2"
assert_contains "$ERR" "$TMP/no-such-token" "the message names the file"

echo "# the daemon unreachable"
DEAD=$(_sg_free_port)
for cmd in "held" "release --all" "drop --all --reason x" "guard on" "status" "events"; do
    # shellcheck disable=SC2086
    run "$SG_BIN" $cmd --admin "127.0.0.1:$DEAD"
    assert_rc 1 "$cmd against a closed port: exit 1"
    assert_contains "$ERR" "admin API at 127.0.0.1:$DEAD unreachable" "$cmd says the admin API is unreachable"
done

echo "# flush: the announce"
start_redis
seed() {
    rcli flushall >/dev/null
    pipe_py "[['SET', 'cache:%d' % i, 'v'] for i in range(20)] + [['SET', 'app:x', 'keep']]"
}
nsnap() { json_get "$(sg snapshots --json)" "len(d['snapshots'])"; }
DBSIZE_PROBE="redis-cli -p $PORT dbsize"
seed
reqs_reset

run sg flush --match 'cache:*' --admin "127.0.0.1:$DEAD"
assert_rc 3 "flush with no daemon at --admin: exit 3"
assert_contains "$ERR" "127.0.0.1:$DEAD unreachable" "the refusal says the daemon is unreachable"
assert_contains "$ERR" "--no-announce" "and how to flush without a daemon"
assert_contains "$ERR" "Nothing was deleted" "and that nothing was deleted"
assert_eq 21 "$(rcli dbsize)" "no daemon: every key is still there"
run sg snapshots --json
assert_eq 0 "$(json_get "$OUT" "len(d['snapshots'])")" "no daemon: no pre-flush snapshot either"
run sg flush --match 'cache:*' --admin "127.0.0.1:$DEAD" --json
assert_rc 3 "flush --json with no daemon: exit 3"
assert_eq refused "$(json_get "$OUT" "d['outcome']")" "outcome refused"
assert_eq "{\"admin\": \"127.0.0.1:$DEAD\", \"confirmed\": false, \"snapshot_id\": null}" \
    "$(json_get "$OUT" "d['announce']")" "announce: not confirmed"

route "POST /v1/flush" 500 '{"error":"snapshot failed: redis timeout"}'
run sg flush --match 'cache:*' --admin "$FAKE"
assert_rc 3 "the daemon answers 500: exit 3"
assert_contains "$ERR" "snapshot failed: redis timeout" "the daemon's error is shown"
assert_eq 21 "$(rcli dbsize)" "a 500: every key is still there"

route "POST /v1/flush" 200 '{"mode":"normal"}'
run sg flush --match 'cache:*' --admin "$FAKE"
assert_rc 3 "the daemon answers without guard mode: exit 3"
assert_contains "$ERR" "without entering guard mode" "the refusal says why"
assert_eq 21 "$(rcli dbsize)" "no guard mode: every key is still there"

route "POST /v1/flush" 401 '{"error":"unauthorized"}'
run sg flush --match 'cache:*' --admin "$FAKE"
assert_rc 2 "the daemon refuses the token: exit 2"
assert_contains "$ERR" "token" "the message is about the token"
assert_contains "$ERR" "nothing was deleted" "and says nothing was deleted"
assert_eq 21 "$(rcli dbsize)" "a bad token: every key is still there"

route "POST /v1/flush" 200 '{"mode":"guard","snapshot_id":42}' "$DBSIZE_PROBE"
reqs_reset
run sg flush --match 'cache:*' --admin "$FAKE" --admin-token tok --reason "INC-7 cache bloat"
assert_rc 0 "the daemon confirms: the flush goes ahead"
assert_eq 1 "$(rcli dbsize)" "confirmed: the cache keys are deleted"
assert_eq 1 "$(req_count)" "one announce"
assert_eq "POST /v1/flush" "$(last_req "r['method'] + ' ' + r['path']")" "announce: POST /v1/flush"
assert_eq "{\"actor\": \"$ACTOR\", \"mode\": \"match\", \"patterns\": [\"cache:*\"], \"reason\": \"INC-7 cache bloat\", \"wait_ms\": 115000}" \
    "$(last_req "r['body']")" "announce body: actor, reason, mode, patterns, how long the flush waits"
assert_eq "Bearer tok" "$(last_req "r['headers'].get('authorization')")" "announce sends the bearer token"
assert_eq 21 "$(last_req "r['probe']")" "the announce came while every key still existed"
assert_contains "$OUT" "announced to the stormguard daemon at $FAKE: guard mode, its snapshot 42" \
    "the output says the daemon confirmed"
assert_contains "$OUT" "pre-flush snapshot" "and the pre-flush snapshot followed"

seed
reqs_reset
run sg flush --flushdb --force --admin "$FAKE" --json
assert_rc 0 "flush --flushdb --json with a confirming daemon"
assert_eq "{\"admin\": \"$FAKE\", \"confirmed\": true, \"snapshot_id\": 42}" "$(json_get "$OUT" "d['announce']")" \
    "--json: the announce, confirmed"
assert_eq '["flushdb", []]' "$(last_req "[r['body']['mode'], r['body']['patterns']]")" "announce body: mode flushdb, no patterns"
assert_eq "stormguard flush" "$(last_req "r['body']['reason']")" "default reason"
assert_eq 0 "$(rcli dbsize)" "flushed"

echo "# flush: when there is no announce"
seed
reqs_reset
route "POST /v1/flush" 200 '{"would_confirm":false,"reason":"Redis is unreachable"}'
run sg flush --match 'cache:*' --admin "$FAKE" --dry-run
assert_rc 3 "flush --dry-run, the daemon would not confirm: exit 3"
assert_contains "$ERR" "would not confirm the announce: Redis is unreachable" "with the daemon's reason"
assert_eq '{"dry_run": true}' "$(last_req "r['body']")" "the dry run asks, and only asks"
route "POST /v1/flush" 200 '{"would_confirm":true}'
run sg flush --match 'cache:*' --admin "$FAKE" --dry-run
assert_rc 0 "flush --dry-run"
assert_contains "$OUT" "reachable and would confirm the announce" "the dry run says the daemon would confirm"
assert_contains "$OUT" "would announce the flush" "the dry run says it would announce"
reqs_reset
run sg flush --match 'nothing:*' --admin "$FAKE"
assert_rc 0 "flush of a pattern with no keys"
rcli set session:1 s >/dev/null
run sg flush --flushdb --admin "$FAKE"
assert_rc 3 "flush refused by a protected namespace"
assert_contains "$ERR" "session:*" "refused for the protected namespace"
rcli del session:1 >/dev/null
assert_eq 0 "$(req_count)" "an empty plan and a protected refusal announce nothing"
assert_eq 21 "$(rcli dbsize)" "and delete nothing"

run sg flush --match 'cache:*' --admin "$FAKE" --no-announce
assert_rc 0 "flush --no-announce"
assert_eq 0 "$(req_count)" "--no-announce: no request to the daemon"
assert_eq 1 "$(rcli dbsize)" "--no-announce: deleted"
assert_not_contains "$OUT" "announced" "--no-announce: the output claims no announce"

seed
printf '[flush]\nannounce = no\n' >"$TMP/no-announce.ini"
run sg flush --match 'cache:*' -c "$TMP/no-announce.ini" --admin "127.0.0.1:$DEAD" --json
assert_rc 0 "[flush] announce = no: flush without a daemon"
assert_eq null "$(json_get "$OUT" "d['announce']")" "--json: announce null"
assert_eq 1 "$(rcli dbsize)" "[flush] announce = no: deleted"
seed
run sg flush --match 'cache:*' --announce no --admin "127.0.0.1:$DEAD"
assert_rc 0 "--announce no: flush without a daemon"
seed
run sg flush --match 'cache:*' --announce maybe
assert_rc 2 "--announce maybe: exit 2"
assert_contains "$ERR" "yes or no" "the message names the values"
assert_eq 0 "$(req_count)" "none of these reached the daemon"

echo "# --help"
for c in held release drop guard; do
    run "$SG_BIN" $c --help
    assert_rc 0 "$c --help"
    assert_contains "$OUT" "usage: stormguard $c" "$c --help shows its usage"
    assert_contains "$OUT" "--admin" "$c --help mentions --admin"
done
run "$SG_BIN" flush --help
assert_contains "$OUT" "--no-announce" "flush --help mentions --no-announce"
run "$SG_BIN" --help
for c in held release drop guard; do
    assert_contains "$OUT" "  $c " "stormguard --help lists $c"
done

finish
