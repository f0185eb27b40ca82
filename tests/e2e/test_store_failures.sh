#!/usr/bin/env bash
# The store fails under a snapshot or a flush: a full disk (a 2 MiB tmpfs),
# a corrupt database file, a path that cannot be a file. Each failure is an
# exit code 1 with a message naming the store and the reason, the store holds
# no complete snapshot of it, and a flush deletes nothing. No stormguard daemon runs
# here: flushes say --no-announce.
source "$(dirname "$0")/../lib.sh"

start_redis
# random values: DUMP compresses, so they must not be compressible
pipe_py "(['SET', 'key:%d' % i, __import__('os').urandom(400)] for i in range(20000))"
assert_eq 20000 "$(rcli dbsize)" "seeded 20000 keys of 400 random bytes (~8 MiB)"

MNT=$TMP/full
mkdir -p "$MNT"
if ! mount -t tmpfs -o size=2m tmpfs "$MNT" 2>/dev/null; then
    echo "# cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): skipping the disk-full part"
    MNT=
else
    trap 'rc=$?; umount -l "$TMP/full" 2>/dev/null; (exit $rc); _sg_cleanup' EXIT
fi

if [ -n "$MNT" ]; then
    run sg snapshot --db "$MNT/sg.db"
    assert_rc 1 "snapshot onto a full disk fails with exit 1"
    assert_contains "$ERR" "disk is full" "the message says the disk is full"
    assert_contains "$ERR" "$MNT/sg.db" "the message names the store"
    run sg snapshots --db "$MNT/sg.db" --json
    assert_rc 0 "the store is still readable after the failed snapshot"
    # the slices written before the disk filled up cannot always be deleted
    # on a full disk: then the row stays 'partial', which nothing reads
    assert_eq 0 "$(json_get "$OUT" "len([s for s in d['snapshots'] if s['state'] != 'partial'])")" \
        "no complete snapshot was recorded (at most a partial one, never read)"

    run sg flush --no-announce --match 'key:*' --db "$MNT/sg.db"
    assert_rc 1 "flush with a full store fails"
    assert_contains "$ERR" "nothing was deleted" "the flush says nothing was deleted"
    assert_eq 20000 "$(rcli dbsize)" "every key is still there"
fi

printf 'this is not a database, just some bytes that fill the header page....' >"$TMP/corrupt.db"
head -c 8192 /dev/urandom >>"$TMP/corrupt.db"
run sg snapshot --db "$TMP/corrupt.db"
assert_rc 1 "snapshot into a corrupt store fails with exit 1"
assert_contains "$ERR" "$TMP/corrupt.db" "the message names the corrupt store"
assert_contains "$ERR" "not a database" "the message says it is not a database"
run sg flush --no-announce --match 'key:*' --db "$TMP/corrupt.db"
assert_rc 1 "flush with a corrupt store fails"
assert_eq 20000 "$(rcli dbsize)" "and deletes nothing"

echo plain >"$TMP/file"
run sg snapshot --db "$TMP/file/sg.db"
assert_rc 1 "a store path under a regular file fails with exit 1"
assert_contains "$ERR" "$TMP/file/sg.db" "the message names the path"
assert_contains "$ERR" "Not a directory" "and the reason"

finish
