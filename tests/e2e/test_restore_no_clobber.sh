#!/usr/bin/env bash
# restore never overwrites an existing key unless --replace; --match restores
# a subset; --dry-run changes nothing; unknown ids fail; `restore latest`.
source "$SG_TESTS/lib.sh"

start_redis

rcli set app:a snap-a >/dev/null
rcli set app:b snap-b >/dev/null
rcli rpush app:l x y z >/dev/null
rcli set other:c snap-c >/dev/null
rcli set app:ttl snap-ttl ex 3600 >/dev/null

run sg snapshot --json
assert_rc 0 "snapshot of 5 keys"
ID=$(json_get "$OUT" "d['snapshot_id']")
assert_eq 5 "$(json_get "$OUT" "d['keys']")" "5 keys snapshotted"

echo "# a key written after the snapshot is not clobbered"
rcli set app:a new-a >/dev/null
rcli del app:b >/dev/null
run sg restore "$ID" --json
assert_rc 0 "restore without --replace"
assert_eq 1 "$(json_get "$OUT" "d['restored']")" "only the missing key restored"
assert_eq 4 "$(json_get "$OUT" "d['skipped_existing']")" "existing keys counted in skipped_existing"
assert_eq 0 "$(json_get "$OUT" "d['failed']")" "nothing failed"
assert_eq new-a "$(rcli get app:a)" "app:a keeps the value written after the snapshot"
assert_eq snap-b "$(rcli get app:b)" "app:b is back"

run sg restore "$ID"
assert_rc 0 "restore (text output)"
assert_contains "$OUT" "5 skipped (exist)" "text output names the skipped keys"

echo "# --replace overwrites"
rcli set app:a newer-a >/dev/null
rcli rpush app:l extra >/dev/null
rcli persist app:ttl >/dev/null
run sg restore "$ID" --replace --json
assert_rc 0 "restore --replace"
assert_eq 5 "$(json_get "$OUT" "d['restored']")" "--replace restores every key"
assert_eq 0 "$(json_get "$OUT" "d['skipped_existing']")" "--replace skips nothing"
assert_eq snap-a "$(rcli get app:a)" "app:a has the snapshot's value again"
assert_eq "x y z" "$(rcli lrange app:l 0 -1 | xargs)" "app:l has the snapshot's list again"
TTL=$(rcli ttl app:ttl)
assert_eq true "$([ "$TTL" -gt 3000 ] && [ "$TTL" -le 3600 ] && echo true || echo "false ($TTL)")" "--replace restores the snapshot's TTL"

echo "# --match restores a subset"
rcli flushall >/dev/null
run sg restore "$ID" --match 'app:*' --json
assert_rc 0 "restore --match app:*"
assert_eq 4 "$(json_get "$OUT" "d['restored']")" "4 app:* keys restored"
assert_eq 1 "$(json_get "$OUT" "d['skipped_unmatched']")" "1 key did not match"
assert_eq 0 "$(rcli exists other:c)" "other:c not restored"
assert_eq 4 "$(rcli dbsize)" "only the matching keys exist"

rcli flushall >/dev/null
run sg restore "$ID" --match 'other:*' --match 'app:[b]' --json
assert_rc 0 "restore with two --match patterns"
assert_eq 2 "$(json_get "$OUT" "d['restored']")" "both patterns restore (other:c, app:b)"
assert_eq 3 "$(json_get "$OUT" "d['skipped_unmatched']")" "3 keys did not match"
assert_eq "snap-b snap-c" "$(rcli mget app:b other:c | xargs)" "the two matching keys are back"

echo "# --dry-run changes nothing and reports counts"
rcli flushall >/dev/null
rcli set app:a dry-a >/dev/null
run sg restore "$ID" --dry-run --json
assert_rc 0 "restore --dry-run"
assert_eq true "$(json_get "$OUT" "d['dry_run']")" "dry_run true"
assert_eq 4 "$(json_get "$OUT" "d['restored']")" "dry run counts 4 keys it would restore"
assert_eq 1 "$(json_get "$OUT" "d['skipped_existing']")" "dry run counts the existing key"
assert_eq 1 "$(rcli dbsize)" "dry run restored nothing"
assert_eq dry-a "$(rcli get app:a)" "dry run left app:a alone"

run sg restore "$ID" --dry-run --match 'app:*'
assert_rc 0 "restore --dry-run (text)"
assert_contains "$OUT" "dry run" "text output says dry run"
assert_eq 1 "$(rcli dbsize)" "text dry run restored nothing"

echo "# unknown snapshot id"
run sg restore 999 --json
assert_rc 1 "restore of a nonexistent id exits 1"
assert_contains "$ERR" "no snapshot 999" "the message names the missing id"
assert_eq 1 "$(rcli dbsize)" "a failed restore changes nothing"

run sg restore --db "$TMP/empty.db"
assert_rc 1 "restore from a store without snapshots exits 1"
assert_contains "$ERR" "no complete snapshot" "the message says there is no snapshot"

echo "# restore latest / no id restores the newest snapshot"
rcli flushall >/dev/null
rcli set app:a second-a >/dev/null
rcli set only:in:second v >/dev/null
run sg snapshot --json
assert_rc 0 "second snapshot"
ID2=$(json_get "$OUT" "d['snapshot_id']")
assert_ne "$ID" "$ID2" "second snapshot has a new id"

rcli flushall >/dev/null
run sg restore latest --json
assert_rc 0 "restore latest"
assert_eq "$ID2" "$(json_get "$OUT" "d['snapshot_id']")" "latest is the second snapshot"
assert_eq 2 "$(json_get "$OUT" "d['restored']")" "2 keys restored"
assert_eq second-a "$(rcli get app:a)" "app:a from the newest snapshot"
assert_eq 0 "$(rcli exists other:c)" "keys only in the older snapshot are not restored"

rcli flushall >/dev/null
run sg restore --json
assert_rc 0 "restore with no id"
assert_eq "$ID2" "$(json_get "$OUT" "d['snapshot_id']")" "no id means latest"

echo "# an older snapshot by id"
rcli flushall >/dev/null
run sg restore "$ID" --json
assert_rc 0 "restore of the first snapshot by id"
assert_eq 5 "$(json_get "$OUT" "d['restored']")" "first snapshot's 5 keys"
assert_eq snap-a "$(rcli get app:a)" "first snapshot's value"

echo "# a one-database snapshot restores into the URL's database"
rcli flushall >/dev/null
run sg restore "$ID" --redis "redis://127.0.0.1:$PORT/5" --json
assert_rc 0 "restore into db 5"
assert_eq 5 "$(rcli -n 5 dbsize)" "keys restored into db 5"
assert_eq 0 "$(rcli -n 0 dbsize)" "db 0 untouched"

echo "# --dry-run --replace reports what --replace would do"
rcli flushall >/dev/null
rcli set app:a dry-a >/dev/null
run sg restore "$ID" --dry-run --replace --json
assert_rc 0 "restore --dry-run --replace"
assert_eq dry-a "$(rcli get app:a)" "dry run --replace left app:a alone"
assert_eq 1 "$(rcli dbsize)" "dry run --replace restored nothing"
assert_eq 5 "$(json_get "$OUT" "d['restored']")" "dry run --replace counts the existing key as one it would overwrite"
assert_eq 0 "$(json_get "$OUT" "d['skipped_existing']")" "dry run --replace would skip nothing"

echo "# a partial snapshot (being written, or its writer stopped midway) is refused"
sqlite3 "$SG_DB" "UPDATE snapshot SET state = 'partial' WHERE id = $ID"
rcli flushall >/dev/null
run sg restore "$ID"
assert_rc 3 "restore of a partial snapshot: refused"
assert_contains "$ERR" "snapshot $ID is partial" "and says why"
assert_eq 0 "$(rcli dbsize)" "nothing restored"

finish
