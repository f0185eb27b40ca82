#!/usr/bin/env bash
# Authentication and ACLs: requirepass with the password from the URL,
# STORMGUARD_REDIS_PASSWORD or REDISCLI_AUTH; the password never shows up in
# output or in the store; wrong passwords and ACL denials get clear messages;
# an unreachable redis is named. No stormguard daemon runs here: flushes say
# --no-announce.
source "$SG_TESTS/lib.sh"

PW='pa:ss@w/rd-Q7x'        # holds ':' '@' '/', percent-encoded in the URL
PW_URL='pa%3Ass%40w%2Frd-Q7x'
PW_TAIL='rd-Q7x'            # what any leak would contain
start_redis --requirepass "$PW"
RCLI_AUTH=$PW
rcli mset app:1 a app:2 b cache:1 c >/dev/null
BASE="redis://127.0.0.1:$PORT"

# no_leak TEXT MSG: TEXT holds no trace of the password
no_leak() {
    assert_not_contains "$1" "$PW_TAIL" "$2: no password"
    assert_not_contains "$1" "$PW_URL" "$2: no encoded password"
}

echo "# no password"
run sg snapshot --redis "$BASE"
assert_rc 1 "snapshot without a password exits 1"
assert_contains "$ERR" "authentication" "the message mentions authentication"
assert_contains "$ERR" "127.0.0.1:$PORT" "the message names the server"

echo "# the password in the URL"
run sg snapshot --json --redis "redis://:$PW_URL@127.0.0.1:$PORT"
assert_rc 0 "snapshot with the password in the URL"
assert_eq 3 "$(json_get "$OUT" "d['keys']")" "3 keys"
no_leak "$OUT$ERR" "snapshot --json"
assert_eq "$BASE/0" "$(json_get "$OUT" "d['redis']")" "the reported URL has no password"
run sg snapshot --redis "redis://default:$PW_URL@127.0.0.1:$PORT"
assert_rc 0 "snapshot as user default with the password in the URL"
no_leak "$OUT$ERR" "snapshot (text)"

echo "# STORMGUARD_REDIS_PASSWORD / REDISCLI_AUTH"
run env STORMGUARD_REDIS_PASSWORD="$PW" "$SG_BIN" snapshot --json --db "$SG_DB" --redis "$BASE"
assert_rc 0 "snapshot with STORMGUARD_REDIS_PASSWORD"
no_leak "$OUT$ERR" "snapshot with STORMGUARD_REDIS_PASSWORD"
run env REDISCLI_AUTH="$PW" "$SG_BIN" snapshot --json --db "$SG_DB" --redis "$BASE"
assert_rc 0 "snapshot with REDISCLI_AUTH"
no_leak "$OUT$ERR" "snapshot with REDISCLI_AUTH"
run env REDISCLI_AUTH="$PW" "$SG_BIN" inspect --redis "$BASE"
assert_rc 0 "inspect with REDISCLI_AUTH"
no_leak "$OUT$ERR" "inspect"

echo "# restore and flush with the password; listings"
rcli del app:1 >/dev/null
run sg restore --json --redis "redis://:$PW_URL@127.0.0.1:$PORT"
assert_rc 0 "restore with the password in the URL"
assert_eq 1 "$(json_get "$OUT" "d['restored']")" "the deleted key is restored"
no_leak "$OUT$ERR" "restore"
run sg flush --no-announce --match 'cache:*' --json --redis "redis://:$PW_URL@127.0.0.1:$PORT"
assert_rc 0 "flush with the password in the URL"
no_leak "$OUT$ERR" "flush"
run sg snapshots
assert_rc 0 "snapshots"
no_leak "$OUT$ERR" "snapshots"
run sg snapshots --json
assert_eq 5 "$(json_get "$OUT" "len(d['snapshots'])")" "5 snapshots listed"
no_leak "$OUT" "snapshots --json"
for f in "$SG_DB" "$SG_DB-wal"; do
    if [ -e "$f" ]; then
        if grep -a -q -F -e "$PW_TAIL" -e "$PW_URL" "$f"; then
            fail "the password is stored in $(basename "$f")"
        fi
        ok "no password stored in $(basename "$f")"
    fi
done

echo "# wrong password"
run sg snapshot --redis "redis://:wrong-Secret-77@127.0.0.1:$PORT"
assert_rc 1 "a wrong password exits 1"
assert_contains "$ERR" "authenticating" "the message says authentication failed"
assert_contains "$ERR" "WRONGPASS" "the message gives redis's reason"
assert_not_contains "$ERR" "wrong-Secret-77" "the message does not echo the wrong password"
run env STORMGUARD_REDIS_PASSWORD=wrong-Secret-77 "$SG_BIN" snapshot --db "$SG_DB" --redis "$BASE"
assert_rc 1 "a wrong password from the environment exits 1"
assert_contains "$ERR" "authenticating" "the message says authentication failed"

echo "# ACL users"
rcli acl setuser snap on '>pw' '~*' '&*' '+@all' '-flushall' '-flushdb' >/dev/null
rcli acl setuser nodump on '>pw' '~*' '&*' '+@all' '-dump' >/dev/null
rcli acl setuser noscript on '>pw' '~*' '&*' '+@all' '-@scripting' >/dev/null
rcli acl setuser noscriptnodump on '>pw' '~*' '&*' '+@all' '-@scripting' '-dump' >/dev/null
rcli acl setuser norestore on '>pw' '~*' '&*' '+@all' '-restore' >/dev/null
rcli mset cache:1 c cache:2 c >/dev/null
N=$(rcli dbsize)

run sg snapshot --json --redis "redis://snap:pw@127.0.0.1:$PORT"
assert_rc 0 "snapshot as ACL user snap"
assert_eq "$N" "$(json_get "$OUT" "d['keys']")" "every key taken"
assert_eq "redis://snap@127.0.0.1:$PORT/0" "$(json_get "$OUT" "d['redis']")" "the reported URL keeps the user, drops the password"

run sg flush --no-announce --flushdb --redis "redis://snap:pw@127.0.0.1:$PORT"
assert_rc 1 "flush --flushdb as a user denied FLUSHDB exits 1"
assert_contains "$ERR" "FLUSHDB" "the message names FLUSHDB"
assert_contains "$ERR" "ACL" "the message says the ACL denied it"
assert_eq "$N" "$(rcli dbsize)" "nothing was deleted"
run sg flush --no-announce --all --redis "redis://snap:pw@127.0.0.1:$PORT"
assert_rc 1 "flush --all as a user denied FLUSHALL exits 1"
assert_contains "$ERR" "FLUSHALL" "the message names FLUSHALL"
assert_eq "$N" "$(rcli dbsize)" "nothing was deleted"

run sg snapshot --redis "redis://nodump:pw@127.0.0.1:$PORT"
assert_rc 1 "snapshot as a user denied DUMP exits 1"
assert_contains "$ERR" "DUMP" "the message names DUMP"
case "$ERR" in
*ACL* | *denied* | *"can't run this command"* | *NOPERM*) ok "the message says the command was not permitted" ;;
*) fail "the message should say DUMP was not permitted: $ERR" ;;
esac

run sg snapshot --json --redis "redis://noscript:pw@127.0.0.1:$PORT"
assert_rc 0 "snapshot as a user denied scripting (PTTL+DUMP fallback)"
assert_eq "$N" "$(json_get "$OUT" "d['keys']")" "every key taken without EVAL"
NSID=$(json_get "$OUT" "d['snapshot_id']")
rcli del app:2 >/dev/null
run sg restore "$NSID" --json --redis "redis://noscript:pw@127.0.0.1:$PORT"
assert_rc 0 "restore of the fallback snapshot"
assert_eq b "$(rcli get app:2)" "its values restore"

run sg snapshot --redis "redis://noscriptnodump:pw@127.0.0.1:$PORT"
assert_rc 1 "snapshot as a user denied scripting and DUMP exits 1"
assert_contains "$ERR" "DUMP" "the message names DUMP"
assert_contains "$ERR" "ACL" "the message says the ACL denied it"

rcli del app:2 >/dev/null
run sg restore "$NSID" --redis "redis://norestore:pw@127.0.0.1:$PORT"
assert_rc 1 "restore as a user denied RESTORE exits 1"
assert_contains "$ERR" "RESTORE" "the message names RESTORE"

run sg snapshot --redis "redis://snap:badpw@127.0.0.1:$PORT"
assert_rc 1 "ACL user with a wrong password exits 1"
assert_contains "$ERR" "snap" "the message names the user"
assert_not_contains "$ERR" "badpw" "the message does not echo the password"

run env STORMGUARD_REDIS_PASSWORD=pw "$SG_BIN" snapshot --db "$SG_DB" --redis "redis://snap@127.0.0.1:$PORT"
assert_rc 0 "user in the URL, password from STORMGUARD_REDIS_PASSWORD"
run sg snapshot --redis "redis://snap@127.0.0.1:$PORT"
assert_rc 2 "user in the URL without any password is a usage error"
assert_contains "$ERR" "no password" "the message says the password is missing"

echo "# redis unreachable"
DEAD=
for i in $(seq 1 20); do
    p=$((20000 + RANDOM % 20001))
    if ! _port_in_use "$p"; then DEAD=$p; break; fi
done
[ -n "$DEAD" ] || fail "found no closed port"
echo "# nothing listens on 127.0.0.1:$DEAD"
run sg snapshot --redis "redis://127.0.0.1:$DEAD"
assert_rc 1 "snapshot against a closed port exits 1"
assert_contains "$ERR" "cannot reach redis 127.0.0.1:$DEAD: Connection refused" "the message names the address and the reason"
run sg inspect --redis "redis://127.0.0.1:$DEAD"
assert_rc 1 "inspect against a closed port exits 1"
assert_contains "$ERR" "cannot reach redis 127.0.0.1:$DEAD: Connection refused" "inspect names the address and the reason"
run sg flush --no-announce --match 'x:*' --redis "redis://127.0.0.1:$DEAD"
assert_rc 1 "flush against a closed port exits 1"
assert_contains "$ERR" "cannot reach redis 127.0.0.1:$DEAD: Connection refused" "flush names the address and the reason"
run sg restore --redis "redis://127.0.0.1:$DEAD"
assert_rc 1 "restore against a closed port exits 1"
assert_contains "$ERR" "cannot reach redis 127.0.0.1:$DEAD" "restore names the address"

echo "# a server without AUTH echoes its arguments: the message must not"
RCLI_AUTH=
start_redis --rename-command AUTH ""
run sg snapshot --redis "redis://:$PW_URL@127.0.0.1:$PORT"
assert_rc 1 "a password for a server without AUTH"
assert_contains "$ERR" "unknown command 'AUTH'" "says AUTH is unknown there"
no_leak "$ERR" "the AUTH error of the one-shot commands"
start_sink
start_gate --redis "redis://:$PW_URL@127.0.0.1:$PORT" --check-interval-ms 200
wait_for 10 "the watcher reports the AUTH failure" grep -q "authenticating" "$GATE_LOG"
no_leak "$(cat "$GATE_LOG")" "the daemon's log"
no_leak "$(gate_status)" "the daemon's status"
stop_gate

finish
