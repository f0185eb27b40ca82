#!/usr/bin/env bash
# snapshot -> FLUSHALL -> restore brings back every key of every type, with
# binary key names and values and TTLs; --json fields; snapshots listing;
# store file mode; keys whose TTL passed are skipped on restore.
source "$SG_TESTS/lib.sh"

start_redis --unixsocket "$TMP/redis.sock" --unixsocketperm 700

echo "# seeding every data type, binary keys, TTLs"
pipe_py "
[
 ['SET', b'str:plain', 'hello'],
 ['SET', b'bin\x00key', b'\x00\xff\x01value\x00'],
 ['SET', b'key with  spaces ', 'v'],
 ['SET', b'line\nbreak\r\nkey', b'multi\nline\r\nvalue'],
 ['SET', b'\xff\xfe\xfd\x80', b'\xc3\x28 not utf8'],
 ['SET', b'', 'the empty key'],
 ['SET', b'str:int', 12345],
 ['SET', b'str:big', b'x' * 200000],
 ['RPUSH', b'list:small', 'a', 'b', b'\x00c'],
 ['RPUSH', b'list:big'] + ['item-%d-' % i + 'y' * (i % 50) for i in range(600)],
 ['SADD', b'set:ints', 1, 2, 3, 100000],
 ['SADD', b'set:strs', 'a', 'b', b'\xff'],
 ['SADD', b'set:big'] + ['m%d' % i for i in range(700)],
 ['ZADD', b'zset:small', 1, 'one', 2.5, 'two', -3, b'\x00three'],
 ['ZADD', b'zset:big'] + sum([[i * 0.5, 'z%d' % i] for i in range(300)], []),
 ['HSET', b'hash:small', 'f1', 'v1', b'f\x002', b'v\xff'],
 ['HSET', b'hash:big'] + sum([['field%d' % i, 'value%d' % i] for i in range(400)], []),
 ['HSET', b'hash\x00bin', 'k', 'v'],
 ['XADD', b'stream:1', '1-1', 'a', '1'],
 ['XADD', b'stream:1', '2-1', 'b', '2', 'c', b'\x00'],
 ['XADD', b'stream:1', '*', 'd', '3'],
 ['XGROUP', 'CREATE', b'stream:1', 'grp', '0'],
 ['XREADGROUP', 'GROUP', 'grp', 'consumer-1', 'COUNT', '2', 'STREAMS', b'stream:1', '>'],
 ['XADD', b'stream\nbin\x00', '*', 'x', 'y'],
 ['SET', b'ttl:string', 'expires later', 'PX', 600000],
 ['RPUSH', b'ttl:list', 'a'],
 ['PEXPIRE', b'ttl:list', 900000],
 ['HSET', b'ttl\x00hash', 'f', 'v'],
 ['EXPIRE', b'ttl\x00hash', 3600],
 ['ZADD', b'ttl:zset', 1, 'a'],
 ['PEXPIREAT', b'ttl:zset', int(__import__('time').time() * 1000) + 7200000],
]"

rpy '
keys = c.scan_all()
state = {}
for k in keys:
    state[k] = (r("DUMP", k), r("PTTL", k), r("TYPE", k), content(k))
pickle.dump((time.time(), state), open(sys.argv[1], "wb"))
print("# %d keys, %d with a TTL, types %s" % (len(state), sum(1 for v in state.values() if v[1] >= 0),
      sorted(set(v[2] for v in state.values()))))
' "$TMP/before.pickle"
NKEYS=$(rcli dbsize)
assert_eq 24 "$NKEYS" "seeded 24 keys"
PAYLOAD=$(rpy 'print(sum(len(v[0]) for v in pickle.load(open(sys.argv[1], "rb"))[1].values()))' "$TMP/before.pickle")

echo "# snapshot --json"
run sg snapshot --json
assert_rc 0 "snapshot succeeds"
SNAP=$OUT
ID=$(json_get "$SNAP" "d['snapshot_id']")
assert_eq 1 "$([[ $ID =~ ^[0-9]+$ ]] && [ "$ID" -ge 1 ] && echo 1)" "snapshot_id is a positive integer ($ID)"
assert_eq complete "$(json_get "$SNAP" "d['state']")" "state is complete"
assert_eq "$NKEYS" "$(json_get "$SNAP" "d['keys']")" "keys counts every key"
assert_eq 0 "$(json_get "$SNAP" "d['vanished']")" "nothing vanished"
assert_eq true "$(json_get "$SNAP" "d['bytes'] >= $PAYLOAD")" "bytes ($(json_get "$SNAP" "d['bytes']")) covers the $PAYLOAD payload bytes"
assert_eq true "$(json_get "$SNAP" "isinstance(d['seconds'], (int, float)) and 0 <= d['seconds'] < 60")" "seconds is a sane number"
assert_eq none "$(json_get "$SNAP" "d['profile']")" "profile none by default"
assert_eq "redis://127.0.0.1:$PORT/0" "$(json_get "$SNAP" "d['redis']")" "redis URL reported"

echo "# every stored payload is what DUMP returns for the key"
rpy '
import sqlite3
_, before = pickle.load(open(sys.argv[1], "rb"))
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[2], uri=True)
rows = {bytes(k): bytes(p) for k, p in db.execute("SELECT key, payload FROM snapshot_key WHERE snapshot_id = ?", (int(sys.argv[3]),))}
assert set(rows) == set(before), "stored keys differ: %r" % (set(rows) ^ set(before))
bad = [k for k in before if rows[k] != before[k][0]]
assert not bad, "payloads differ from DUMP for %r" % bad
print("ok - %d payloads byte-identical to DUMP" % len(rows))
' "$TMP/before.pickle" "$SG_DB" "$ID"
ok "stored payloads equal DUMP"

echo "# store file"
[ -f "$SG_DB" ] || fail "store $SG_DB was not created"
assert_eq 600 "$(stat -c %a "$SG_DB")" "store file mode is 0600"
for side in "$SG_DB-wal" "$SG_DB-shm"; do
    if [ -e "$side" ]; then
        assert_eq 0 "$(( $(stat -c %#a "$side") & 077 ))" "$(basename "$side") has no group/other access"
    fi
done

echo "# snapshots --json"
run sg snapshots --json
assert_rc 0 "snapshots --json succeeds"
assert_eq 1 "$(json_get "$OUT" "len(d['snapshots'])")" "one snapshot listed"
assert_eq "$ID" "$(json_get "$OUT" "d['snapshots'][0]['id']")" "listed id matches"
assert_eq complete "$(json_get "$OUT" "d['snapshots'][0]['state']")" "listed state complete"
assert_eq "$NKEYS" "$(json_get "$OUT" "d['snapshots'][0]['keys']")" "listed key count"
assert_eq manual "$(json_get "$OUT" "d['snapshots'][0]['reason']")" "listed reason manual"
run sg snapshots
assert_rc 0 "snapshots (text) succeeds"
assert_contains "$OUT" "complete" "text listing shows the snapshot"

echo "# FLUSHALL + restore"
rcli flushall >/dev/null
assert_eq 0 "$(rcli dbsize)" "redis is empty"
run sg restore "$ID" --json
assert_rc 0 "restore succeeds"
assert_eq "$NKEYS" "$(json_get "$OUT" "d['restored']")" "restored every key"
assert_eq 0 "$(json_get "$OUT" "d['skipped_existing']")" "none skipped as existing"
assert_eq 0 "$(json_get "$OUT" "d['skipped_expired']")" "none skipped as expired"
assert_eq 0 "$(json_get "$OUT" "d['failed']")" "none failed"
assert_eq false "$(json_get "$OUT" "d['dry_run']")" "not a dry run"
assert_eq "$NKEYS" "$(rcli dbsize)" "dbsize back to $NKEYS"

echo "# comparing type, content and PTTL of every key"
rpy '
t0, before = pickle.load(open(sys.argv[1], "rb"))
elapsed_ms = (time.time() - t0) * 1000
keys = set(c.scan_all())
missing = set(before) - keys
extra = keys - set(before)
assert not missing, "missing after restore: %r" % sorted(missing)
assert not extra, "unexpected keys after restore: %r" % sorted(extra)
bad = []
for k, (dump, pttl, typ, _) in before.items():
    if r("TYPE", k) != typ:
        bad.append((k, "type", typ, r("TYPE", k)))
    if content(k) != before[k][3]:
        bad.append((k, "value differs"))
    now = r("PTTL", k)
    if pttl < 0:
        if now != -1:
            bad.append((k, "ttl", pttl, now))
    elif not (0 < now <= pttl and now >= pttl - elapsed_ms - 2000):
        bad.append((k, "ttl", pttl, now, elapsed_ms))
assert not bad, "mismatches: %r" % bad
print("ok - %d keys identical (content), types equal, TTLs within tolerance" % len(before))
' "$TMP/before.pickle"
ok "every key, value and TTL restored"

echo "# a key whose TTL passed between snapshot and restore is skipped"
rcli flushall >/dev/null
rcli set keep:me v >/dev/null
rcli set short:lived v px 1500 >/dev/null
run sg snapshot --json
assert_rc 0 "snapshot with a short-lived key"
ID2=$(json_get "$OUT" "d['snapshot_id']")
assert_eq 2 "$(json_get "$OUT" "d['keys']")" "both keys snapshotted"
sleep 2
assert_eq 0 "$(rcli exists short:lived)" "short-lived key expired in redis"
rcli flushall >/dev/null
run sg restore "$ID2" --json
assert_rc 0 "restore of a snapshot with an expired key"
assert_eq 1 "$(json_get "$OUT" "d['skipped_expired']")" "skipped_expired 1"
assert_eq 1 "$(json_get "$OUT" "d['restored']")" "restored 1"
assert_eq 0 "$(json_get "$OUT" "d['failed']")" "failed 0"
assert_eq 0 "$(rcli exists short:lived)" "expired key not recreated"
assert_eq v "$(rcli get keep:me)" "the other key is back"

echo "# listing, --reason, pruning with --keep and --max-age"
run sg snapshots --json
assert_eq "[$ID2, $ID]" "$(json_get "$OUT" "[s['id'] for s in d['snapshots']]")" "snapshots listed newest first"
sleep 3 # $ID2 is then over 5 s old: --max-age below prunes it, however slow the machine
run sg snapshot --json --keep 2 --reason nightly
assert_rc 0 "snapshot --keep 2 --reason nightly"
ID3=$(json_get "$OUT" "d['snapshot_id']")
assert_eq 1 "$(json_get "$OUT" "d['pruned']")" "--keep 2 pruned the oldest snapshot"
run sg snapshots --json
assert_eq "[$ID3, $ID2]" "$(json_get "$OUT" "[s['id'] for s in d['snapshots']]")" "the two newest remain"
assert_eq nightly "$(json_get "$OUT" "d['snapshots'][0]['reason']")" "--reason is recorded"
run sg restore "$ID" --json
assert_rc 1 "a pruned snapshot cannot be restored"
# $ID2 was taken over 5 s ago, $ID3 just now
run sg snapshot --json --keep 0 --max-age 4s
assert_rc 0 "snapshot --max-age 4s"
ID4=$(json_get "$OUT" "d['snapshot_id']")
assert_eq 1 "$(json_get "$OUT" "d['pruned']")" "--max-age pruned the snapshot older than 4 s"
run sg snapshots --json
assert_eq "[$ID4, $ID3]" "$(json_get "$OUT" "[s['id'] for s in d['snapshots']]")" "the young snapshots remain"
run sg snapshot --json --keep 0
assert_eq 0 "$(json_get "$OUT" "d['pruned']")" "--keep 0 prunes nothing"

echo "# --match selects keys; a big incompressible value; a unix socket URL"
rcli flushall >/dev/null
rpy 'r("SET", "big:rand", os.urandom(8 << 20)); r("RPUSH", "big:list", *[os.urandom(40) for _ in range(20000)])'
rcli mset small:1 a small:2 b other:3 c >/dev/null
rpy 'pickle.dump({k: content(k) for k in c.scan_all()}, open(sys.argv[1], "wb"))' "$TMP/big.pickle"
run sg snapshot --json --match 'big:*' --match 'small:1' --redis "unix://$TMP/redis.sock"
assert_rc 0 "snapshot --match over a unix socket"
MID=$(json_get "$OUT" "d['snapshot_id']")
assert_eq 3 "$(json_get "$OUT" "d['keys']")" "--match big:* --match small:1 takes 3 keys"
assert_eq true "$(json_get "$OUT" "d['bytes'] > 8 << 20")" "the 8 MiB value is in the snapshot"
assert_eq "unix://$TMP/redis.sock" "$(json_get "$OUT" "d['redis']")" "the unix socket URL is reported"
run sg snapshots --json
assert_eq 'big:* small:1' "$(json_get "$OUT" "d['snapshots'][0]['selection']")" "selection lists the patterns"
rcli flushall >/dev/null
run sg restore "$MID" --json --redis "unix://$TMP/redis.sock"
assert_rc 0 "restore over a unix socket"
assert_eq 3 "$(json_get "$OUT" "d['restored']")" "3 keys restored"
rpy '
before = pickle.load(open(sys.argv[1], "rb"))
now = {k: content(k) for k in c.scan_all()}
assert set(now) == {b"big:rand", b"big:list", b"small:1"}, sorted(now)
assert all(now[k] == before[k] for k in now), "values differ"
' "$TMP/big.pickle"
ok "the big values are byte-identical"
rcli -n 1 set in:db1 one >/dev/null
run sg snapshot --json --redis "unix://$TMP/redis.sock?db=1"
assert_rc 0 "snapshot of unix://...?db=1"
assert_eq 1 "$(json_get "$OUT" "d['keys']")" "db 1 over the socket has 1 key"

echo "# an empty database"
rcli flushall >/dev/null
run sg snapshot --json
assert_rc 0 "snapshot of an empty database"
assert_eq 0 "$(json_get "$OUT" "d['keys']")" "0 keys"
run sg restore --json
assert_rc 0 "restore of an empty snapshot"
assert_eq 0 "$(json_get "$OUT" "d['restored']")" "0 restored"

echo "# a database other than 0"
rcli -n 2 set in:db2 two >/dev/null
run sg snapshot --json --redis "redis://127.0.0.1:$PORT/2"
assert_rc 0 "snapshot of db 2"
assert_eq 1 "$(json_get "$OUT" "d['keys']")" "db 2 has 1 key"
assert_eq "redis://127.0.0.1:$PORT/2" "$(json_get "$OUT" "d['redis']")" "the URL names db 2"
rcli flushall >/dev/null
run sg restore --json --redis "redis://127.0.0.1:$PORT/2"
assert_rc 0 "restore into db 2"
assert_eq two "$(rcli -n 2 get in:db2)" "the key is back in db 2"
assert_eq 0 "$(rcli -n 0 dbsize)" "db 0 untouched"

finish
