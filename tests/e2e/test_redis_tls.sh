#!/usr/bin/env bash
# Redis over TLS, end to end: a TLS-only redis-server (--port 0 --tls-port,
# requirepass) with certificates made by openssl here. snapshot (scan and
# sync), restore, flush, inspect and the daemon's watch all work over
# rediss:// and over --tls; the chain and the host name are verified, and
# each refusal names its reason (unknown CA, host name mismatch, expired
# certificate, plain text to the TLS port and TLS to a plain port, a client
# certificate the server wants); --insecure works and warns; the password
# never shows. A second server stands for managed Redis (CONFIG, SYNC,
# DEBUG, KEYS, BGSAVE renamed away): everything but --method sync works, and
# that says SYNC is unavailable.
source "$SG_TESTS/lib.sh"
command -v openssl >/dev/null || skip "openssl not found"

CERTS=$TMP/certs
make_tls_certs "$CERTS"
PW='tls-Secr3t-pw'
start_redis_tls "$CERTS" --requirepass "$PW"
RCLI_AUTH=$PW
seed_igor 20
rcli mset cache:1 a cache:2 b app:1 c >/dev/null
KEYS=$(rcli dbsize)
export STORMGUARD_REDIS_PASSWORD=$PW
CA=(--cacert "$CERTS/ca.pem")
SG_URL="rediss://localhost:$PORT"

no_leak() { assert_not_contains "$1" "$PW" "$2: no password"; }

echo "# snapshot, both methods, over rediss://"
run sg snapshot --json "${CA[@]}"
assert_rc 0 "snapshot over rediss:// with --cacert"
assert_eq "$KEYS" "$(json_get "$OUT" "d['keys']")" "every key of the TLS server"
assert_eq "rediss://localhost:$PORT/0" "$(json_get "$OUT" "d['redis']")" "the URL says rediss://"
no_leak "$OUT$ERR" "snapshot"
run sg snapshot --json --method sync "${CA[@]}"
assert_rc 0 "snapshot --method sync over TLS"
assert_eq "$KEYS" "$(json_get "$OUT" "d['keys']")" "the RDB over TLS holds every key"

echo "# --tls with a redis:// URL, an IP address, and the configuration file"
run sg snapshot --json --redis "redis://127.0.0.1:$PORT" --tls "${CA[@]}"
assert_rc 0 "redis:// with --tls, by IP address (the certificate holds 127.0.0.1)"
printf '[redis]\nurl = redis://localhost:%s\ntls = yes\ncacert = %s\n' "$PORT" "$CERTS/ca.pem" \
    >"$TMP/tls.ini"
run sgx inspect -c "$TMP/tls.ini"
assert_rc 0 "inspect with [redis] tls and cacert from the file"
assert_contains "$OUT" "igor" "inspect over TLS sees the Igor keys"

echo "# restore and flush over TLS"
rcli del "igor:jenkins-prod:TEAM-A/SERVICE-3:team-a/service-3" >/dev/null
run sg restore --json "${CA[@]}"
assert_rc 0 "restore over TLS"
assert_eq 1 "$(json_get "$OUT" "d['restored']")" "the deleted key is back"
assert_eq 1 "$(rcli exists "igor:jenkins-prod:TEAM-A/SERVICE-3:team-a/service-3")" "on the server"
run sg flush --no-announce --match 'cache:*' --json "${CA[@]}"
assert_rc 0 "flush --match over TLS"
assert_eq 0 "$(rcli exists cache:1 cache:2)" "cache keys deleted"
assert_eq 1 "$(rcli exists app:1)" "other keys kept"
no_leak "$OUT$ERR" "flush"

echo "# refusals, each with its reason"
run sg snapshot --cacert "$CERTS/ca2.pem"
assert_rc 1 "a CA that did not sign the certificate"
assert_contains "$ERR" "certificate verify failed" "says the verification failed"
assert_contains "$ERR" "--cacert" "points to --cacert"
run sg snapshot --redis "rediss://127.0.0.1:$PORT" --sni other.example "${CA[@]}"
assert_rc 1 "a name the certificate does not hold"
assert_contains "$ERR" "mismatch" "says the name does not match"
run sg snapshot --redis "redis://localhost:$PORT"
assert_rc 1 "plain text to the TLS port"
assert_contains "$ERR" "rediss://" "suggests rediss:// or --tls"
run sg snapshot --cacert "$TMP/missing.pem"
assert_rc 2 "a CA file that does not exist"
assert_contains "$ERR" "missing.pem" "names the file"
run sg snapshot --cacertdir "$TMP/no-such-dir"
assert_rc 2 "a CA directory that does not exist"
assert_contains "$ERR" "cacertdir" "names the setting"
assert_contains "$ERR" "no-such-dir" "and the directory"
run sg snapshot --cacertdir "$CERTS/ca.pem"
assert_rc 2 "a CA directory that is a file"
assert_contains "$ERR" "not a directory" "says so"
run sg snapshot --cert "$CERTS/client.pem" --key "$CERTS/other.key" "${CA[@]}"
assert_rc 2 "a key that is not the certificate's"
assert_contains "$ERR" "is not the key of" "says the two do not belong together"
run sg snapshot --cert "$CERTS/client.pem" "${CA[@]}"
assert_rc 2 "a certificate without its key"
assert_contains "$ERR" "key" "says the key is missing"

echo "# the server's certificate changes: expired, another name"
RCLI_TLS=(--tls --insecure) # redis-cli, too, would refuse what follows
rcli config set tls-cert-file "$CERTS/expired.pem" tls-key-file "$CERTS/expired.key" >/dev/null
run sg snapshot "${CA[@]}"
assert_rc 1 "an expired certificate"
assert_contains "$ERR" "expired" "says it expired"
rcli config set tls-cert-file "$CERTS/other.pem" tls-key-file "$CERTS/other.key" >/dev/null
run sg snapshot "${CA[@]}"
assert_rc 1 "a certificate for another name"
assert_contains "$ERR" "hostname mismatch" "says the host name does not match"
run sg snapshot --json --sni other.example "${CA[@]}"
assert_rc 0 "--sni names the certificate's name"
run sg snapshot --json --insecure
assert_rc 0 "--insecure skips the checks"
assert_contains "$ERR" "--insecure" "and warns that it does"
rcli config set tls-cert-file "$CERTS/server.pem" tls-key-file "$CERTS/server.key" >/dev/null
RCLI_TLS=(--tls --cacert "$CERTS/ca.pem")

echo "# a server that wants a client certificate"
rcli config set tls-auth-clients yes >/dev/null
RCLI_TLS+=(--cert "$CERTS/client.pem" --key "$CERTS/client.key")
run sg snapshot "${CA[@]}"
assert_rc 1 "no client certificate"
assert_contains "$ERR" "--cert" "points to --cert and --key"
run sg snapshot --insecure
assert_rc 1 "no client certificate, with --insecure"
assert_contains "$ERR" "--cert" "still points to --cert and --key"
assert_not_contains "$ERR" "verify failed" "not to a verification --insecure skipped"
run sg snapshot --json --cert "$CERTS/client.pem" --key "$CERTS/client.key" "${CA[@]}"
assert_rc 0 "with --cert and --key"
rcli config set tls-auth-clients no >/dev/null
RCLI_TLS=(--tls --cacert "$CERTS/ca.pem")

echo "# TLS to a plain port"
TLS_PORT=$PORT
TLS_RCLI=("${RCLI_TLS[@]}")
RCLI_TLS=()
RCLI_AUTH=
start_redis --rename-command CONFIG "" --rename-command SYNC "" --rename-command PSYNC "" \
    --rename-command DEBUG "" --rename-command KEYS "" --rename-command BGSAVE ""
PLAIN_PORT=$PORT
T0=$(date +%s)
run sg snapshot --redis "rediss://127.0.0.1:$PLAIN_PORT" --connect-timeout 2000 "${CA[@]}"
assert_rc 1 "TLS to a plain port"
assert_contains "$ERR" "plain port" "says it looks like a plain port"
assert_le $(($(date +%s) - T0)) 4 "within the connect timeout"

echo "# managed Redis: CONFIG, SYNC, DEBUG, KEYS, BGSAVE renamed away"
seed_igor 5
U="redis://127.0.0.1:$PLAIN_PORT"
unset STORMGUARD_REDIS_PASSWORD
run sg snapshot --json --redis "$U"
assert_rc 0 "snapshot (scan) without CONFIG, KEYS, DEBUG"
S=$(json_get "$OUT" "d['keys']")
run sg inspect --redis "$U"
assert_rc 0 "inspect without CONFIG"
run sg flush --no-announce --match 'igor:*' --json --redis "$U"
assert_rc 0 "flush without CONFIG"
run sg restore --json --redis "$U"
assert_rc 0 "restore without CONFIG"
assert_eq "$S" "$(redis-cli -p "$PLAIN_PORT" dbsize)" "every key back"
run sg snapshot --method sync --redis "$U"
assert_rc 1 "--method sync without SYNC"
assert_contains "$ERR" "SYNC" "names SYNC"
assert_contains "$ERR" "--method scan" "and the method that works"

echo "# the daemon watches over TLS and notices a FLUSHALL"
PORT=$TLS_PORT
RCLI_TLS=("${TLS_RCLI[@]}")
RCLI_AUTH=$PW
export STORMGUARD_REDIS_PASSWORD=$PW
start_sink
start_gate --redis "rediss://localhost:$TLS_PORT" "${CA[@]}" --profile igor --rewarm on \
    --check-interval-ms 200 --guard-duration 1h --snapshot-interval 0
link_up() { [ "$(json_get "$(gate_status)" "d['redis']['link']")" = up ]; }
mode_is() { [ "$(json_get "$(gate_status)" "d['mode']")" = "$1" ]; }
wait_for 10 "the watcher connects over TLS" link_up
assert_eq 1 "$(rcli exists stormguard:canary)" "the canary was written over TLS"
run sgx snapshot --db "$SG_DB" --redis "rediss://localhost:$TLS_PORT" "${CA[@]}" --profile igor
assert_rc 0 "a baseline for the rewarm"
rcli flushall >/dev/null
wait_for 5 "guard mode after FLUSHALL over TLS" mode_is guard
wait_for 5 "the rewarm over TLS brings the Igor keys back" \
    sh -c "[ \$(redis-cli -p $TLS_PORT --tls --cacert $CERTS/ca.pem --no-auth-warning -a $PW --scan --pattern 'igor:*' | wc -l) -ge 40 ]"
no_leak "$(cat "$GATE_LOG")" "the daemon's log"
stop_gate
finish
