#!/usr/bin/env bash
# The store's file system failing under the gate (README, "When the store's
# disk fails"), with the log in a JSON file:
#  - a full disk: posts get 503, /readyz says so, and once space is back
#    /readyz turns 200 by itself (a probe write a second), with no post;
#  - on a disk-backed file system (tmpfs writes through an open descriptor
#    of an immutable file), the database made immutable: checkpoints fail,
#    logged through the log, at most once a minute per cause, nothing on
#    stderr;
#  - every store file made immutable under load (SQLite's memory-mapped WAL
#    index then raises SIGBUS): one clear error line and exit 1, no crash;
#    after the files are writable again a restart delivers every event that
#    was answered 200.
# Needs root for the tmpfs and chattr; skipped with a message otherwise.
source "$SG_TESTS/lib.sh"

MNT=$TMP/fs
mkdir -p "$MNT"
if ! mount -t tmpfs -o size=2m tmpfs "$MNT" 2>/dev/null; then
    echo "# cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): skipping"
    finish
    exit 0
fi
trap 'rc=$?; kill -9 "$GATE_PID" 2>/dev/null || true; chattr -i "$MNT"/* 2>/dev/null; umount -l "$MNT" 2>/dev/null || true; (exit $rc); _sg_cleanup' EXIT
SG_DB=$MNT/sg.db
LOG=$TMP/gate.jsonl
start_sink
start_gate --max-body 200k --log-format json --log-file "$LOG"

echo "# a full disk, then space again: /readyz recovers by itself"
pad=$(head -c 150000 /dev/zero | tr '\0' x)
post_big() {
    gate_post / "{\"details\":{\"type\":\"build\"},\"pad\":\"$pad\",\"content\":{\"master\":\"m\",\"project\":{\"name\":\"team-f/job-$1\",\"lastBuild\":{\"number\":$1,\"building\":false}}}}"
}
GOT503=
for n in $(seq 1 30); do
    post_big "$n"
    if [ "$HTTP_STATUS" = 503 ]; then
        GOT503=$n
        break
    fi
    [ "$HTTP_STATUS" = 200 ] || fail "post $n: expected 200 or 503, got $HTTP_STATUS $REPLY"
done
[ -n "$GOT503" ] || fail "no 503 after 30 posts of 150 KB onto a 2 MB tmpfs"
ok "the disk is full after $((GOT503 - 1)) events: 503"
admin_get /readyz
assert_eq 503 "$HTTP_STATUS" "/readyz 503 while the journal cannot be written"
ST=$(gate_status)
assert_eq true "$(json_get "$ST" "d['journal'].get('low_space')")" "/v1/status: low_space (free below the journal's headroom)"
assert_eq $((128 << 20)) "$(json_get "$ST" "d['journal']['headroom_bytes']")" "/v1/status: headroom_bytes 128 MiB"
mount -o remount,size=8m "$MNT"
ready() { admin_get /readyz; [ "$HTTP_STATUS" = 200 ]; }
wait_for 5 "/readyz 200 again without a post" ready
ok "space back: /readyz 200 within 5 s, without a post"
assert_contains "$(cat "$LOG")" '"msg":"journal writable again"' "the log says the journal is writable again"
post_big "$GOT503"
assert_eq 200 "$HTTP_STATUS" "and the refused build is accepted"

echo "# the store on a disk-backed file system"
stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM: exit 0"
# tmpfs lets writes through a descriptor opened before chattr +i; the
# disk-backed file systems that hold real stores (ext4, xfs) do not
mkdir -p "$TMP/disk"
SG_DB=$TMP/disk/sg.db
if ! "$PY" - "$TMP/disk/probe" <<'PY'
import subprocess, sys
f = open(sys.argv[1], "ab")
if subprocess.call(["chattr", "+i", sys.argv[1]], stderr=subprocess.DEVNULL):
    sys.exit(1)
try:
    f.write(b"x"); f.flush()
    ok = False
except OSError:
    ok = True
subprocess.call(["chattr", "-i", sys.argv[1]])
sys.exit(0 if ok else 1)
PY
then
    echo "# the file system of $TMP keeps writing to an immutable file (or has no chattr): skipping the immutable-store parts"
    finish
    exit 0
fi
trap 'rc=$?; kill -9 "$GATE_PID" 2>/dev/null || true; chattr -i "$MNT"/* "$TMP"/disk/* 2>/dev/null; umount -l "$MNT" 2>/dev/null || true; (exit $rc); _sg_cleanup' EXIT
: >"$SINK_LOG"
start_gate --log-format json --log-file "$LOG"
echo "# the database immutable: checkpoint failures go to the log, rate-limited"
FROM=$(($(wc -l <"$LOG") + 1))
ERR_FROM=$(($(wc -l <"$GATE_LOG") + 1))
chattr +i "$SG_DB"
for n in $(seq 100 130); do # WAL pages the checkpoints then fail to copy
    gate_post / "$(igor_event team-f/small-$n $n 1526040000000)"
done
sleep 3
chattr -i "$SG_DB"
NCKPT=$(tail -n +"$FROM" "$LOG" | grep -c '"msg":"checkpoint' || true)
[ "$NCKPT" -ge 1 ] || fail "no checkpoint failure in the log: $(tail -n 5 "$LOG")"
assert_le "$NCKPT" 2 "checkpoint failures: $NCKPT lines in 3 s (one per cause per minute)"
# h2o's connection pool prints one line of its own, once per process, when
# the downstream closed an idle connection (README, Limits): not ours
assert_eq "" "$(tail -n +"$ERR_FROM" "$GATE_LOG" | grep -v '^\[WARN\] detected close by upstream' || true)" \
    "nothing on stderr: every line went to the log file"
json_lines() { "$PY" -c 'import json, sys; [json.loads(l) for l in open(sys.argv[1])]; print("ok")' "$LOG"; }
assert_eq ok "$(json_lines)" "every log line is a JSON object"

echo "# every store file immutable under load: a clear exit, not a crash"
"$PY" "$SG_TESTS/poster.py" --port "$GATE_PORT" --count 3000 --rate 400 --threads 4 \
    --deadline 60 --out "$TMP/posts.tsv" </dev/null >"$TMP/poster.out" 2>&1 &
POSTER=$!
bg_track $POSTER
sleep 1
chattr +i "$SG_DB" "$SG_DB-wal" "$SG_DB-shm"
# the kernel maps a page written since its last writeback writable: the
# next write to it does not fault. Written back now (as it would be within
# 30 s anyway), the next write of SQLite's WAL index faults, and the file
# system, which cannot change an immutable file, answers with SIGBUS
sync "$SG_DB-shm"
for i in $(seq 1 100); do
    kill -0 "$GATE_PID" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$GATE_PID" 2>/dev/null && fail "the gate still runs 10 s after its store was made immutable"
GATE_RC=0
wait "$GATE_PID" || GATE_RC=$?
assert_eq 1 "$GATE_RC" "the gate exits 1 (it did not crash with SIGBUS)"
assert_contains "$(grep SIGBUS "$LOG" || true)" '"level":"error","what":"store"' "one error line of the store names SIGBUS"
assert_contains "$(grep SIGBUS "$LOG")" "every event answered 200 is committed" "and says that nothing answered is lost"
assert_eq ok "$(json_lines)" "the log is JSON to its last line"
chattr -i "$SG_DB" "$SG_DB-wal" "$SG_DB-shm"
restart_gate
wait $POSTER || fail "the poster did not get every event answered 200: $(cat "$TMP/poster.out")"
pending0() { [ "$(json_get "$(gate_status)" "d['pending']")" = 0 ]; }
wait_for 30 "every pending event delivered" pending0
sink_py '
ids = set()
for line in open(sys.argv[1]):
    i, code, reply = line.rstrip("\n").split("\t", 2)
    if code == "200" and json.loads(reply)["kind"] != "replay":
        ids.add(str(json.loads(reply)["id"]))
missing = sorted(ids - set(by_id))
print("ok" if not missing else "answered 200, never delivered: %r" % missing[:10])
' "$TMP/posts.tsv" >"$TMP/verify.out"
assert_eq ok "$(cat "$TMP/verify.out")" "after the restart every event answered 200 reached the sink"
stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM: exit 0"
finish
