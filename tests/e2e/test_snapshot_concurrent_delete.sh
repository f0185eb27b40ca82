#!/usr/bin/env bash
# Keys deleted while a snapshot runs: the snapshot still succeeds, keys that
# were never deleted are all in it, keys and vanished are consistent, and a
# restore after FLUSHALL yields exactly `keys` keys.
source "$SG_TESTS/lib.sh"

start_redis --enable-debug-command local

TOTAL=200000
rcli debug populate $TOTAL key >/dev/null
assert_eq $TOTAL "$(rcli dbsize)" "populated $TOTAL keys (key:0 .. key:$((TOTAL - 1)))"

echo "# snapshot in the background while key:100000.. are UNLINKed in batches"
timeout 120 "$SG_BIN" snapshot --json --db "$SG_DB" --redis "redis://127.0.0.1:$PORT" \
    >"$TMP/snap.out" 2>"$TMP/snap.err" &
SNAP_PID=$!
bg_track $SNAP_PID

# deletes key:100000 .. key:199999 in shuffled batches of 500, pausing a
# little between batches so the deletes spread over the snapshot's run
timeout 60 env PORT="$PORT" PYTHONPATH="$TMP" "$PY" -c '
import random, sys, time
from resp import connect
c = connect()
keys = ["key:%d" % i for i in range(100000, 200000)]
random.seed(7)
random.shuffle(keys)
deleted = 0
for at in range(0, len(keys), 500):
    deleted += c.call("UNLINK", *keys[at:at + 500])
    time.sleep(0.008)
print(deleted)
' >"$TMP/deleted.out" &
DEL_PID=$!
bg_track $DEL_PID

DEL_RC=0
wait $DEL_PID || DEL_RC=$?
SNAP_RC=0
wait $SNAP_PID || SNAP_RC=$?
assert_eq 0 "$DEL_RC" "the deleting loop finished"
assert_eq 100000 "$(cat "$TMP/deleted.out")" "100000 keys were deleted"
RC=$SNAP_RC OUT=$(cat "$TMP/snap.out") ERR=$(cat "$TMP/snap.err")
assert_rc 0 "the snapshot succeeded while keys were being deleted"
J=$OUT
ID=$(json_get "$J" "d['snapshot_id']")
KEYS=$(json_get "$J" "d['keys']")
VANISHED=$(json_get "$J" "d['vanished']")
echo "# snapshot $ID: keys $KEYS, vanished $VANISHED"
assert_eq complete "$(json_get "$J" "d['state']")" "state complete"
assert_le "$KEYS" $TOTAL "keys <= $TOTAL"
assert_le 100000 "$KEYS" "keys >= 100000 (the keys never deleted)"
assert_le $((KEYS + VANISHED)) $TOTAL "keys + vanished <= $TOTAL"
assert_eq $((TOTAL - 100000)) "$(rcli dbsize)" "redis holds the 100000 undeleted keys"

run sg snapshots --json
assert_eq "$KEYS $VANISHED" "$(json_get "$OUT" "['%d %d' % (s['keys'], s['vanished']) for s in d['snapshots'] if s['id'] == $ID][0]")" "snapshots lists the same keys and vanished"

echo "# FLUSHALL + restore: exactly \`keys\` keys come back"
rcli flushall >/dev/null
run sg restore "$ID" --json
assert_rc 0 "restore succeeds"
assert_eq "$KEYS" "$(json_get "$OUT" "d['restored']")" "restored == keys"
assert_eq 0 "$(json_get "$OUT" "d['skipped_existing']")" "no key was stored twice (skipped_existing 0)"
assert_eq 0 "$(json_get "$OUT" "d['failed']")" "nothing failed"
assert_eq "$KEYS" "$(rcli dbsize)" "dbsize after restore == keys"

MISSING=$(rpy '
c.send("SELECT", 0); c.read()
missing = 0
for at in range(0, 100000, 1000):
    n = r("EXISTS", *["key:%d" % i for i in range(at, at + 1000)])
    missing += 1000 - n
print(missing)
')
assert_eq 0 "$MISSING" "every never-deleted key (key:0..key:99999) is in the snapshot"
assert_eq "value:123" "$(rcli get key:123)" "values are intact"

echo "# two snapshots at the same time into one store"
for n in 1 2; do
    timeout 120 "$SG_BIN" snapshot --json --db "$SG_DB" --redis "redis://127.0.0.1:$PORT" \
        >"$TMP/par$n.out" 2>"$TMP/par$n.err" &
    eval "PAR$n=\$!"
    bg_track $!
done
for n in 1 2; do
    eval "pid=\$PAR$n"
    RC=0
    wait "$pid" || RC=$?
    OUT=$(cat "$TMP/par$n.out") ERR=$(cat "$TMP/par$n.err")
    assert_rc 0 "concurrent snapshot $n succeeds"
    assert_eq "$KEYS" "$(json_get "$OUT" "d['keys']")" "concurrent snapshot $n holds every key"
done
run sg snapshots --json
assert_eq "complete complete" "$(json_get "$OUT" "' '.join(s['state'] for s in d['snapshots'][:2])")" "both are complete"

finish
