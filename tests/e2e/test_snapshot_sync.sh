#!/usr/bin/env bash
# snapshot --method sync reads the RDB Redis sends a replica: both framings
# (diskless with an end mark, after Redis's own delay, during which the store
# stays writable; from disk with a length, refused where Redis keeps no
# persistence), payloads equal to DUMP, keys already expired but not yet
# reclaimed are left out, the values of keys not taken are never held in
# memory, several databases at once, and a server that refuses SYNC.
# The round trip of every type runs as e2e_test_snapshot_roundtrip_sync.
source "$SG_TESTS/lib.sh"

# payloads_equal_dump ID: every key of snapshot ID has the payload DUMP gives
payloads_equal_dump() {
    rpy '
import sqlite3
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
rows = list(db.execute("SELECT db, key, payload FROM snapshot_key WHERE snapshot_id = ?", (int(sys.argv[2]),)))
bad = []
for dbn, k, p in rows:
    r("SELECT", dbn)
    if r("DUMP", bytes(k)) != bytes(p):
        bad.append((dbn, bytes(k)))
r("SELECT", 0)
assert rows and not bad, "payloads differ from DUMP: %r" % bad[:5]
print("# %d payloads equal DUMP" % len(rows))
' "$SG_DB" "$1"
}

seed() {
    pipe_py "
[['SET', 'str:%d' % i, 'v' * (i % 50)] for i in range(300)] + [
 ['HSET', b'hash:\xff', *sum([['f%d' % i, i] for i in range(200)], [])],
 ['RPUSH', 'list:1', *range(100)],
 ['ZADD', 'zset:1', 1.5, 'a', 2, 'b'],
 ['SADD', 'set:1', 'x', 'y'],
 ['XADD', 'stream:1', '*', 'f', 'v'],
 ['SET', 'ttl:1', 'v', 'EX', 3600],
]"
}

echo "# diskless SYNC with Redis's default 5 s delay: the end-mark framing"
start_redis --repl-diskless-sync-delay 5
seed
NKEYS=$(rcli dbsize)
START=$(date +%s)
sg snapshot --method sync --json >"$TMP/delayed.json" 2>"$TMP/delayed.err" &
SNAP_PID=$!
sleep 1.5
# the snapshot waits for Redis without holding the store's write lock
T0=$(date +%s%N)
"$PY" -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=3, isolation_level=None)
c.execute("BEGIN IMMEDIATE"); c.execute("COMMIT")' "$SG_DB"
WAITED_MS=$((($(date +%s%N) - T0) / 1000000))
assert_le "$WAITED_MS" 1000 "a writer got the store at once while the snapshot waited (${WAITED_MS} ms)"
wait "$SNAP_PID"
assert_eq 0 "$?" "snapshot --method sync"
OUT=$(cat "$TMP/delayed.json")
assert_eq "$NKEYS" "$(json_get "$OUT" "d['keys']")" "every key taken"
assert_eq 0 "$(json_get "$OUT" "d['vanished']")" "nothing vanished"
assert_eq 1 "$(( $(date +%s) - START >= 4 ))" "it waited out the diskless delay"
payloads_equal_dump "$(json_get "$OUT" "d['snapshot_id']")"
ok "diskless: payloads equal DUMP"
stop_redis

echo "# SYNC from disk: refused without persistence, else the length framing"
start_redis --repl-diskless-sync no --enable-debug-command local
seed
run sg snapshot --method sync --json
assert_rc 3 "a disk-based SYNC on a server without persistence is refused"
assert_contains "$ERR" "would write this snapshot's RDB to its disk" "the refusal says why"
assert_eq 0 "$(ls "$TMP/redis-$PORT" | grep -c '\.rdb$')" "no RDB file was written"
rcli config set save "3600 1" >/dev/null
run sg snapshot --method sync --json
assert_rc 0 "snapshot --method sync from a disk-based server that persists anyway"
assert_eq "$NKEYS" "$(json_get "$OUT" "d['keys']")" "every key taken"
payloads_equal_dump "$(json_get "$OUT" "d['snapshot_id']")"
ok "disk-based: payloads equal DUMP"

echo "# a key that expired but is still in the RDB is not taken"
rcli debug set-active-expire 0 >/dev/null
rcli set gone:1 v px 50 >/dev/null
sleep 0.3
run sg snapshot --method sync --json
assert_rc 0 "snapshot with an expired, unreclaimed key"
assert_eq "$NKEYS" "$(json_get "$OUT" "d['keys']")" "the expired key is not among the keys"
assert_eq 1 "$(json_get "$OUT" "d['vanished']")" "it is counted as vanished"
rcli debug set-active-expire 1 >/dev/null

echo "# a big value the snapshot does not take is never held in memory"
rpy 'r("SELECT", 3); r("SET", "big:other-db", os.urandom(64 << 20)); r("SELECT", 0)'
"$PY" -c '
import resource, subprocess, sys
rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)
print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)' \
    "$SG_BIN" snapshot --method sync --db "$SG_DB" --redis "redis://127.0.0.1:$PORT/0" >"$TMP/rss"
read -r RC RSS_MB <"$TMP/rss"
assert_eq 0 "$RC" "snapshot of db 0 beside a 64 MiB value in db 3"
assert_le "$RSS_MB" 40 "its peak RSS (${RSS_MB} MiB) stays far below the value's size"
rcli -n 3 del big:other-db >/dev/null

echo "# flush --all: every database from one RDB, on a server that closes idle clients"
rcli -n 2 set in:db2 two >/dev/null
rcli -n 5 hset in:db5 f v >/dev/null
# the flush's own connection idles through a 2 s wait: Redis closes it
rcli config set repl-diskless-sync yes >/dev/null
rcli config set repl-diskless-sync-delay 2 >/dev/null
rcli config set timeout 1 >/dev/null
run sg flush --no-announce --all --method sync --json
rcli config set timeout 0 >/dev/null
assert_rc 0 "flush --all --method sync"
FID=$(json_get "$OUT" "d['snapshot_id']")
run sg snapshots --json
assert_eq $((NKEYS + 2)) "$(json_get "$OUT" "[s['keys'] for s in d['snapshots'] if s['id'] == $FID][0]")" "the pre-flush snapshot has the keys of all databases"
assert_eq 0 "$(rcli dbsize)" "flushed"
run sg restore "$FID" --json
assert_rc 0 "restore of the multi-database snapshot"
assert_eq two "$(rcli -n 2 get in:db2)" "db 2's key is back in db 2"
assert_eq v "$(rcli -n 5 hget in:db5 f)" "db 5's key is back in db 5"
assert_eq "$NKEYS" "$(rcli dbsize)" "db 0 is whole again"

echo "# a user without SYNC: a clear error, no snapshot"
rcli acl setuser nosync on '>pw' '~*' '+@all' '-sync' >/dev/null
BEFORE=$("$PY" -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from snapshot").fetchone()[0])' "$SG_DB")
run sg snapshot --method sync --redis "redis://nosync:pw@127.0.0.1:$PORT"
assert_rc 1 "snapshot --method sync as a user without SYNC"
assert_contains "$ERR" "refused SYNC: NOPERM" "the error names the refused SYNC"
assert_contains "$ERR" "--method scan" "and points at the scan method"
assert_eq "$BEFORE" "$("$PY" -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from snapshot").fetchone()[0])' "$SG_DB")" "no snapshot row was left"
rcli acl setuser norepl on '>pw' '~*' '+@all' '-replconf' >/dev/null
run sg snapshot --method sync --redis "redis://norepl:pw@127.0.0.1:$PORT"
assert_rc 1 "snapshot --method sync as a user without REPLCONF"
assert_contains "$ERR" "denied REPLCONF to this user (ACL)" "the error names REPLCONF"

echo "# a bad method is a usage error"
run sg snapshot --method rsync
assert_rc 2 "--method rsync"
assert_contains "$ERR" "must be one of scan,sync" "the error lists the methods"

finish
