#!/usr/bin/env bash
# flush: --match deletes only what matches after a pre-flush snapshot that
# restores it; protected namespaces refuse (exit 3) unless --force; custom
# --protect; --dry-run; --all across databases; a flush whose snapshot cannot
# be written deletes nothing; --json fields. No stormguard daemon runs here,
# so every flush that would delete says --no-announce (the announce to the
# daemon is tested in test_cli_held.sh).
source "$SG_TESTS/lib.sh"

start_redis

# 50 cache strings + a cache hash, 3 sessions, an app key, a queue
seed_mixed() {
    rcli flushall >/dev/null
    pipe_py "
[['SET', 'cache:%d' % i, 'cached-%d' % i] for i in range(50)] + [
 ['HSET', 'cache:h', 'f', 'v'],
 ['SET', 'session:1', 's1'], ['SET', 'session:2', 's2'], ['SET', 'session:3', 's3', 'EX', 3600],
 ['SET', 'app:x', 'keep'],
 ['RPUSH', 'queue:jobs', 'j1', 'j2'],
]"
}
NCACHE=51
NALL=56
nsnap() { json_get "$(sg snapshots --json)" "len(d['snapshots'])"; }

echo "# flush --match 'cache:*'"
seed_mixed
run sg flush --no-announce --match 'cache:*' --json
assert_rc 0 "flush --match cache:* succeeds"
J=$OUT
assert_eq flushed "$(json_get "$J" "d['outcome']")" "outcome flushed"
assert_eq $NCACHE "$(json_get "$J" "d['planned']")" "planned $NCACHE"
assert_eq $NCACHE "$(json_get "$J" "d['deleted']")" "deleted $NCACHE"
assert_eq 0 "$(json_get "$J" "d['remaining']")" "remaining 0"
assert_eq true "$(json_get "$J" "d['verified']")" "verified true"
FID=$(json_get "$J" "d['snapshot_id']")
[[ $FID =~ ^[0-9]+$ ]] || fail "snapshot_id should be an id, got $FID"
ok "snapshot_id $FID"
assert_eq 0 "$(rcli --scan --pattern 'cache:*' | wc -l)" "no cache keys left"
assert_eq $((NALL - NCACHE)) "$(rcli dbsize)" "every other key is still there"
assert_eq keep "$(rcli get app:x)" "app:x untouched"
assert_eq 2 "$(rcli llen queue:jobs)" "queue:jobs untouched"

run sg snapshots --json
assert_rc 0 "snapshots --json after the flush"
assert_eq "$FID" "$(json_get "$OUT" "d['snapshots'][0]['id']")" "the pre-flush snapshot is the newest"
assert_eq pre-flush "$(json_get "$OUT" "d['snapshots'][0]['reason']")" "its reason is pre-flush"
assert_eq $NCACHE "$(json_get "$OUT" "d['snapshots'][0]['keys']")" "it holds exactly the flushed keys"
assert_eq complete "$(json_get "$OUT" "d['snapshots'][0]['state']")" "it is complete"

run sg restore "$FID" --json
assert_rc 0 "restore of the pre-flush snapshot"
assert_eq $NCACHE "$(json_get "$OUT" "d['restored']")" "every flushed key restored"
assert_eq $((NALL - NCACHE)) "$(json_get "$OUT" "d['skipped_existing'] + d['skipped_unmatched'] + $((NALL - NCACHE))")" "nothing else touched"
assert_eq $NALL "$(rcli dbsize)" "all $NALL keys exist again"
assert_eq cached-7 "$(rcli get cache:7)" "cache:7 has its value back"
assert_eq v "$(rcli hget cache:h f)" "cache:h has its value back"

run sg flush --no-announce --match 'cache:*'
assert_rc 0 "flush --match (text output)"
assert_contains "$OUT" "pre-flush snapshot" "text output names the pre-flush snapshot"
assert_contains "$OUT" "restore" "text output says how to restore"

echo "# --flushdb refuses when session:* keys exist"
seed_mixed
N0=$(nsnap)
run sg flush --no-announce --flushdb
assert_rc 3 "flush --flushdb with sessions exits 3"
assert_contains "$ERR" "session:*" "the refusal names the namespace"
assert_contains "$ERR" "session:* 3" "the refusal gives its key count"
assert_contains "$ERR" "queue:* 1" "the refusal names every protected namespace hit"
assert_eq $NALL "$(rcli dbsize)" "nothing was deleted"
assert_eq "$N0" "$(nsnap)" "no snapshot was taken"

run sg flush --no-announce --flushdb --json
assert_rc 3 "flush --flushdb --json exits 3"
assert_eq refused "$(json_get "$OUT" "d['outcome']")" "outcome refused"
assert_eq 3 "$(json_get "$OUT" "d['protected']['session:*']")" "protected counts session:* 3"
assert_eq 4 "$(json_get "$OUT" "d['protected_total']")" "protected_total 4 (sessions + queue)"
assert_eq $NALL "$(json_get "$OUT" "d['planned']")" "planned counts every key"
assert_eq null "$(json_get "$OUT" "d['snapshot_id']")" "no snapshot id on refusal"
assert_eq $NALL "$(rcli dbsize)" "still nothing deleted"

run sg flush --no-announce --match 'session:*'
assert_rc 3 "flush --match session:* refused"
assert_eq 3 "$(rcli --scan --pattern 'session:*' | wc -l)" "sessions survive"

echo "# --force overrides"
run sg flush --no-announce --flushdb --force --json
assert_rc 0 "flush --flushdb --force"
assert_eq flushed "$(json_get "$OUT" "d['outcome']")" "outcome flushed"
assert_eq $NALL "$(json_get "$OUT" "d['deleted']")" "deleted $NALL"
assert_eq 0 "$(json_get "$OUT" "d['remaining']")" "remaining 0"
FID=$(json_get "$OUT" "d['snapshot_id']")
assert_eq 0 "$(rcli dbsize)" "database is empty"
run sg restore "$FID" --json
assert_rc 0 "restore after a forced flushdb"
assert_eq $NALL "$(json_get "$OUT" "d['restored']")" "every key restored"
assert_eq s2 "$(rcli get session:2)" "sessions are back"
TTL=$(rcli ttl session:3)
assert_eq true "$([ "$TTL" -gt 3000 ] && echo true || echo "false ($TTL)")" "session:3 keeps its TTL"

echo "# custom --protect"
seed_mixed
run sg flush --no-announce --match 'cache:*' --protect 'cache:1*'
assert_rc 3 "flush refused by a custom --protect"
assert_contains "$ERR" "cache:1*" "the refusal names the custom pattern"
assert_contains "$ERR" "cache:1* 11" "and its count (cache:1, cache:10..19)"
assert_eq $NALL "$(rcli dbsize)" "nothing deleted"
run sg flush --no-announce --match 'app:*' --protect 'cache:*' --protect 'app:*' --json
assert_rc 3 "a repeated --protect adds patterns"
assert_eq 1 "$(json_get "$OUT" "d['protected']['app:*']")" "app:* protected"
printf '[flush]\nprotect = app:*\n' >"$TMP/protect.ini"
run sg flush --no-announce --match 'app:*' -c "$TMP/protect.ini"
assert_rc 3 "protect from the config file"
assert_contains "$ERR" "app:*" "the refusal names the configured pattern"
assert_eq keep "$(rcli get app:x)" "app:x still there"

echo "# --dry-run deletes nothing and prints the plan"
N0=$(nsnap)
run sg flush --no-announce --match 'cache:*' --dry-run
assert_rc 0 "flush --dry-run"
assert_contains "$OUT" "$NCACHE keys" "the plan counts the keys"
assert_contains "$OUT" "cache" "the plan names the namespace"
assert_contains "$OUT" "nothing was changed" "the plan says nothing changed"
assert_eq $NALL "$(rcli dbsize)" "dry run deleted nothing"
assert_eq "$N0" "$(nsnap)" "dry run took no snapshot"
run sg flush --no-announce --match 'cache:*' --dry-run --json
assert_rc 0 "flush --dry-run --json"
assert_eq dry-run "$(json_get "$OUT" "d['outcome']")" "outcome dry-run"
assert_eq $NCACHE "$(json_get "$OUT" "d['planned']")" "planned $NCACHE"
assert_eq true "$(json_get "$OUT" "d['dry_run']")" "dry_run true"
assert_eq "[[\"cache\", $NCACHE]]" "$(json_get "$OUT" "[[n['namespace'], n['keys']] for n in d['namespaces']]")" "namespaces in the plan"
run sg flush --no-announce --flushdb --dry-run --force
assert_rc 0 "flush --flushdb --dry-run --force"
assert_contains "$OUT" "protected" "the plan mentions the protected keys it would delete"
assert_eq $NALL "$(rcli dbsize)" "still nothing deleted"
run sg flush --no-announce --flushdb --dry-run
assert_eq $NALL "$(rcli dbsize)" "dry run of a refused flush deletes nothing (exit $RC)"

echo "# --no-snapshot"
N0=$(nsnap)
run sg flush --no-announce --match 'cache:*' --no-snapshot --json
assert_rc 0 "flush --no-snapshot"
assert_eq null "$(json_get "$OUT" "d['snapshot_id']")" "snapshot_id null"
assert_eq $NCACHE "$(json_get "$OUT" "d['deleted']")" "deleted $NCACHE"
assert_eq "$N0" "$(nsnap)" "no snapshot taken"

echo "# --all with keys in db 0 and db 3"
rcli flushall >/dev/null
for i in 1 2 3 4 5; do rcli -n 0 set "cache:d0:$i" "zero-$i" >/dev/null; done
for i in 1 2 3; do rcli -n 3 set "cache:d3:$i" "three-$i" >/dev/null; done
rcli -n 3 hset cache:d3:h f v >/dev/null
run sg flush --no-announce --all --json
assert_rc 0 "flush --all"
assert_eq flushed "$(json_get "$OUT" "d['outcome']")" "outcome flushed"
assert_eq 9 "$(json_get "$OUT" "d['planned']")" "planned 9 keys in 2 databases"
assert_eq 9 "$(json_get "$OUT" "d['deleted']")" "deleted 9"
assert_eq 0 "$(json_get "$OUT" "d['remaining']")" "remaining 0"
AID=$(json_get "$OUT" "d['snapshot_id']")
# FLUSHALL ASYNC: the keyspace is emptied at once, memory freed later
assert_eq "0 0" "$(rcli -n 0 dbsize) $(rcli -n 3 dbsize)" "both databases are empty"
run sg snapshots --json
assert_eq 9 "$(json_get "$OUT" "[s for s in d['snapshots'] if s['id'] == $AID][0]['keys']")" "the --all snapshot holds 9 keys"
run sg restore "$AID" --json
assert_rc 0 "restore of the --all snapshot"
assert_eq 9 "$(json_get "$OUT" "d['restored']")" "restored 9"
assert_eq 5 "$(rcli -n 0 dbsize)" "db 0 has its 5 keys back"
assert_eq 4 "$(rcli -n 3 dbsize)" "db 3 has its 4 keys back"
assert_eq three-2 "$(rcli -n 3 get cache:d3:2)" "db 3 values are back in db 3"
assert_eq 0 "$(rcli -n 0 exists cache:d3:2)" "db 3 keys did not land in db 0"

echo "# --all refuses when a protected key lives in another database"
rcli flushall >/dev/null
rcli -n 0 set cache:a v >/dev/null
rcli -n 4 set lock:deploy held >/dev/null
run sg flush --no-announce --all
assert_rc 3 "flush --all with lock:* in db 4 exits 3"
assert_contains "$ERR" "lock:* 1" "the refusal names lock:* in db 4"
assert_eq "1 1" "$(rcli -n 0 dbsize) $(rcli -n 4 dbsize)" "nothing deleted in any database"

echo "# --flushdb flushes only the URL's database"
rcli flushall >/dev/null
rcli -n 0 set cache:zero v >/dev/null
rcli -n 2 set cache:two v >/dev/null
rcli -n 2 set cache:two:b v >/dev/null
run sg flush --no-announce --flushdb --json --redis "redis://127.0.0.1:$PORT/2"
assert_rc 0 "flush --flushdb of db 2"
assert_eq 2 "$(json_get "$OUT" "d['deleted']")" "deleted the 2 keys of db 2"
assert_eq "1 0" "$(rcli -n 0 dbsize) $(rcli -n 2 dbsize)" "db 0 untouched, db 2 empty"
DB2=$(json_get "$OUT" "d['snapshot_id']")
run sg restore "$DB2" --json --redis "redis://127.0.0.1:$PORT/2"
assert_rc 0 "restore of the db 2 snapshot"
assert_eq "1 2" "$(rcli -n 0 dbsize) $(rcli -n 2 dbsize)" "db 2 restored, db 0 unchanged"

echo "# binary key names"
rcli flushall >/dev/null
pipe_py "[['SET', b'cache:\x00nul', b'\x00'], ['SET', b'cache:new\nline', 'n'], ['SET', b'cache:\xff\xfe', 'ff'], ['SET', b'app:\x00keep', 'k']]"
run sg flush --no-announce --match 'cache:*' --json
assert_rc 0 "flush --match over binary key names"
assert_eq 3 "$(json_get "$OUT" "d['deleted']")" "the 3 binary cache keys deleted"
assert_eq 1 "$(rcli dbsize)" "the binary app key is left"
BID=$(json_get "$OUT" "d['snapshot_id']")
run sg restore "$BID" --json
assert_eq 3 "$(json_get "$OUT" "d['restored']")" "binary keys restored"
assert_eq 3 "$(rpy 'print(sum(1 for k in c.scan_all() if k.startswith(b"cache:")))')" "the restored names are byte-exact"
assert_eq 1 "$(rpy 'print(r("EXISTS", b"cache:\x00nul"))')" "cache:\\x00nul is back"

echo "# the snapshot cannot be written: nothing is deleted"
seed_mixed
: >"$TMP/file"
N0=$(nsnap)
run sg flush --no-announce --match 'cache:*' --db "$TMP/file/sg.db"
assert_rc 1 "store under a regular file: flush fails with exit 1"
assert_contains "$ERR" "$TMP/file/sg.db" "the message names the store path"
assert_eq $NALL "$(rcli dbsize)" "nothing deleted (store under a regular file)"
run sg flush --no-announce --flushdb --force --db "$TMP/file/sg.db"
assert_rc 1 "flush --flushdb --force with an unwritable store fails"
assert_eq $NALL "$(rcli dbsize)" "nothing deleted (--flushdb --force)"
run sg flush --no-announce --all --db "$TMP/file/sg.db" --force
assert_rc 1 "flush --all --force with an unwritable store fails"
assert_eq $NALL "$(rcli dbsize)" "nothing deleted (--all --force)"

head -c 65536 /dev/urandom >"$TMP/garbage.db"
SUM=$(md5sum <"$TMP/garbage.db")
run sg flush --no-announce --match 'cache:*' --db "$TMP/garbage.db"
assert_rc 1 "corrupt store (garbage bytes): flush fails with exit 1"
assert_contains "$ERR" "$TMP/garbage.db" "the message names the corrupt store"
assert_eq $NALL "$(rcli dbsize)" "nothing deleted (corrupt store)"
assert_eq "$SUM" "$(md5sum <"$TMP/garbage.db")" "the corrupt file was not modified"

# an SQLite file that is not a stormguard store
"$PY" -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute("create table snapshot(x)"); c.execute("pragma user_version = 999"); c.commit()' "$TMP/alien.db"
run sg flush --no-announce --match 'cache:*' --db "$TMP/alien.db"
assert_rc 1 "store with a newer schema version: flush fails"
assert_eq $NALL "$(rcli dbsize)" "nothing deleted (foreign store)"

# a store another process holds the write lock on: the snapshot cannot begin
sg snapshot --match 'none:*' --db "$TMP/locked.db" >/dev/null
"$PY" -c '
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(60)
' "$TMP/locked.db" >"$TMP/locker.out" &
LOCKER=$!
bg_track $LOCKER
for i in $(seq 1 50); do grep -q locked "$TMP/locker.out" && break; sleep 0.1; done
grep -q locked "$TMP/locker.out" || fail "could not lock $TMP/locked.db"
run timeout 60 "$SG_BIN" flush --no-announce --match 'cache:*' --db "$TMP/locked.db" --redis "redis://127.0.0.1:$PORT"
assert_rc 1 "store locked by another writer: flush fails with exit 1"
assert_contains "$ERR" "nothing was deleted" "the message says nothing was deleted"
assert_eq $NALL "$(rcli dbsize)" "nothing deleted (locked store)"
kill $LOCKER
wait $LOCKER 2>/dev/null || true

if [ "$(id -u)" != 0 ]; then
    sg snapshot --match 'none:*' --db "$TMP/ro.db" >/dev/null
    chmod 0400 "$TMP/ro.db"
    run sg flush --no-announce --match 'cache:*' --db "$TMP/ro.db"
    assert_rc 1 "read-only store file: flush fails"
    assert_eq $NALL "$(rcli dbsize)" "nothing deleted (read-only store)"
else
    echo "# running as root: the chmod 0400 store case is covered by the tricks above"
fi

# redis refuses the snapshot's DUMPs, or its SYNC (ACL): still nothing deleted
DENY=-dump
[ "${SG_METHOD:-scan}" = sync ] && DENY=-sync
rcli acl setuser nodump on '>pw' '~*' '+@all' "$DENY" >/dev/null
run sg flush --no-announce --match 'cache:*' --redis "redis://nodump:pw@127.0.0.1:$PORT"
assert_rc 1 "flush as a user that may not ${DENY#-} fails"
assert_contains "$ERR" "nothing was deleted" "the message says nothing was deleted"
if [ "$DENY" = -sync ]; then
    assert_contains "$ERR" "refused SYNC: NOPERM" "the message names the refused SYNC"
    assert_contains "$ERR" "--method scan" "and the method that needs no SYNC"
fi
assert_eq $NALL "$(rcli dbsize)" "nothing deleted (DUMP denied)"

echo "# nothing to flush"
run sg flush --no-announce --match 'nomatch:*' --json
assert_rc 0 "flush of a pattern with no keys"
assert_eq nothing-to-flush "$(json_get "$OUT" "d['outcome']")" "outcome nothing-to-flush"
assert_eq 0 "$(json_get "$OUT" "d['planned']")" "planned 0"

finish
