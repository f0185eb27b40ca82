#!/usr/bin/env bash
# Usage and configuration errors exit 2 with clear messages on stderr and
# touch nothing; every subcommand's --help exits 0 and lists its options;
# `snapshots` on a missing store fails cleanly (exit 1).
#
# No redis-server is started: usage errors must be found before connecting,
# so the URL points at a closed port (a connect attempt would exit 1).
source "$SG_TESTS/lib.sh"

SG_URL="redis://127.0.0.1:1"

# usage_error MSG NEEDLE CMD...: CMD exits 2, says NEEDLE on stderr, prints
# nothing on stdout and creates no store.
usage_error() {
    local msg=$1 needle=$2
    shift 2
    run "$@"
    assert_rc 2 "$msg: exit 2"
    assert_contains "$ERR" "$needle" "$msg: message says '$needle'"
    [ -z "$OUT" ] || fail "$msg: expected nothing on stdout, got: $OUT"
    [ ! -e "$SG_DB" ] || fail "$msg: the store $SG_DB was created"
}

echo "# unknown options and commands"
usage_error "unknown option" "unknown option --bogus" sg snapshot --bogus
usage_error "unknown short option" "unknown option" sg snapshots -Z
usage_error "unknown option of flush" "unknown option --flush-everything" sg flush --flush-everything
usage_error "option without its value" "--redis needs a value" sgx snapshot --redis
usage_error "unknown command" "unknown command 'frobnicate'" sgx frobnicate
run sgx
assert_rc 2 "no command: exit 2"
assert_contains "$ERR" "usage: stormguard" "no command: usage on stderr"
usage_error "unexpected argument" "unexpected argument 'extra'" sg snapshot extra
usage_error "restore with two ids" "unexpected argument '2'" sg restore 1 2

echo "# flush modes"
usage_error "flush with no mode" "choose exactly one of --match PATTERN, --flushdb or --all" sg flush
usage_error "flush with --flushdb and --all" "choose exactly one" sg flush --flushdb --all
usage_error "flush with --match and --flushdb" "choose exactly one" sg flush --match 'cache:*' --flushdb
usage_error "flush --dry-run with no mode" "choose exactly one" sg flush --dry-run
usage_error "flush --force with no mode" "choose exactly one" sg flush --force

echo "# bad --redis URLs"
usage_error "http:// URL" "bad redis URL" sg snapshot --redis http://127.0.0.1:6379
usage_error "port out of range" "bad redis URL" sg snapshot --redis redis://127.0.0.1:99999
usage_error "port not a number" "bad redis URL" sg snapshot --redis redis://127.0.0.1:abc
usage_error "db not a number" "bad redis URL" sg snapshot --redis redis://127.0.0.1:6379/x
usage_error "relative unix socket" "bad redis URL" sg snapshot --redis unix://relative.sock
usage_error "empty URL" "--redis" sg snapshot --redis ''
run sg snapshot --redis 'redis://user:topsecret-91@127.0.0.1:abc'
assert_rc 2 "bad URL with a password: exit 2"
assert_not_contains "$ERR" "topsecret-91" "a bad URL's password is not echoed"

echo "# bad values of configuration flags"
usage_error "--keep -1" "--keep" sg snapshot --keep -1
usage_error "--keep abc" "'abc'" sg snapshot --keep abc
usage_error "--keep 1.5" "'1.5'" sg snapshot --keep 1.5
usage_error "--max-age 5x" "--max-age" sg snapshot --max-age 5x
usage_error "--scan-count below 1000" "--scan-count" sg snapshot --scan-count 10
usage_error "--connect-timeout abc" "--connect-timeout" sg snapshot --connect-timeout abc
usage_error "--profile bogus" "unknown profile 'bogus'" sg snapshot --profile bogus
usage_error "--synchronous bogus" "'bogus' must be normal or full" sg snapshot --synchronous bogus
usage_error "inspect --samples abc" "--samples" sg inspect --samples abc

echo "# restore ids"
usage_error "restore abc" "'abc' is not a snapshot id" sg restore abc
usage_error "restore 0" "'0' is not a snapshot id" sg restore 0
usage_error "restore 12abc" "'12abc' is not a snapshot id" sg restore 12abc
usage_error "restore 99999999999999999999" "is not a snapshot id" sg restore 99999999999999999999

echo "# configuration files"
printf '[redis]\nurl = redis://127.0.0.1:1\n\n[store]\nbogus_key = 1\n' >"$TMP/unknown-key.ini"
usage_error "config with an unknown key" "$TMP/unknown-key.ini:5" sg snapshot -c "$TMP/unknown-key.ini"
assert_contains "$ERR" "bogus_key" "the message names the unknown key"
printf '[redis]\nurl = redis://127.0.0.1:1\n[nope]\nx = 1\n' >"$TMP/unknown-section.ini"
usage_error "config with an unknown section (reported on its header line)" "$TMP/unknown-section.ini:3" sg snapshot -c "$TMP/unknown-section.ini"
assert_contains "$ERR" "nope" "the message names the unknown section"
printf '# a comment\n[snapshot]\nkeep = many\n' >"$TMP/bad-value.ini"
usage_error "config with a bad value" "$TMP/bad-value.ini:3" sg snapshot -c "$TMP/bad-value.ini"
assert_contains "$ERR" "keep" "the message names the key with the bad value"
printf '[redis]\nthis line is not ini\n' >"$TMP/syntax.ini"
usage_error "config with a syntax error" "$TMP/syntax.ini:2" sg snapshot -c "$TMP/syntax.ini"
printf '[redis]\nurl = http://nope\n' >"$TMP/bad-url.ini"
usage_error "config with a bad URL" "$TMP/bad-url.ini:2" sg snapshot -c "$TMP/bad-url.ini"
usage_error "missing config file" "$TMP/missing.ini" sg snapshot -c "$TMP/missing.ini"
usage_error "STORMGUARD_CONFIG with an unknown key" "$TMP/unknown-key.ini:5" env STORMGUARD_CONFIG="$TMP/unknown-key.ini" "$SG_BIN" snapshot --db "$SG_DB"
usage_error "--config= form" "$TMP/unknown-key.ini:5" sg snapshot --config="$TMP/unknown-key.ini"

echo "# --help"
run sgx --help
assert_rc 0 "stormguard --help exits 0"
for c in snapshot snapshots restore flush inspect version; do
    assert_contains "$OUT" "  $c " "stormguard --help lists $c"
done
run sgx -h
assert_rc 0 "stormguard -h exits 0"

# help_lists CMD OPTION...: CMD --help exits 0 on stdout and names each option
help_lists() {
    local cmd=$1 o
    shift
    run sgx "$cmd" --help
    assert_rc 0 "$cmd --help exits 0"
    assert_contains "$OUT" "usage: stormguard $cmd" "$cmd --help shows its usage"
    [ -z "$ERR" ] || fail "$cmd --help wrote to stderr: $ERR"
    for o in "$@"; do
        assert_contains "$OUT" "$o" "$cmd --help mentions $o"
    done
    run sgx "$cmd" -h
    assert_rc 0 "$cmd -h exits 0"
}
help_lists snapshot --redis --db --profile --prefix --match --reason --keep --max-age --scan-count --json
help_lists snapshots --db --json
help_lists restore --replace --dry-run --match --redis --db --json latest
help_lists flush --match --flushdb --all --force --no-snapshot --dry-run --no-announce --reason --admin --protect --redis --db --json
help_lists inspect --samples --redis --json
help_lists version --json
run sg flush --help --bogus-after-help
assert_eq 0 "$RC" "--help wins over later arguments"
[ ! -e "$SG_DB" ] || fail "--help created the store"
ok "--help touches no store"

echo "# snapshots on a missing store"
run sg snapshots --db "$TMP/missing.db"
assert_rc 1 "snapshots on a missing store exits 1"
assert_contains "$ERR" "$TMP/missing.db" "the message names the store"
[ ! -e "$TMP/missing.db" ] || fail "snapshots created $TMP/missing.db"
ok "snapshots did not create the store"
run sg snapshots --json --db "$TMP/no/such/dir/sg.db"
assert_rc 1 "snapshots --json on a store in a missing directory exits 1"
assert_contains "$ERR" "$TMP/no/such/dir/sg.db" "the message names the store"
[ ! -e "$TMP/no" ] || fail "snapshots created $TMP/no"
ok "snapshots created no directory"
head -c 4096 /dev/urandom >"$TMP/garbage.db"
run sg snapshots --db "$TMP/garbage.db"
assert_rc 1 "snapshots on a corrupt store exits 1"
assert_contains "$ERR" "$TMP/garbage.db" "the message names the corrupt store"

echo "# runtime errors are not usage errors"
run sg snapshot --db "$TMP/sg-runtime.db"
assert_rc 1 "snapshot against a closed port exits 1"
assert_contains "$ERR" "cannot reach redis 127.0.0.1:1" "the message names the address"

echo "# stormguard run: a storm threshold out of range is a usage error, and the daemon exits"
run timeout 20 "$SG_BIN" run --downstream http://127.0.0.1:9 --db "$TMP/sg-run.db" --watch off \
    --listen 127.0.0.1:0 --admin 127.0.0.1:0 --storm-same-job 1
assert_rc 2 "--storm-same-job 1 exits 2 (not hanging)"
assert_contains "$ERR" "same_job_builds 1 is out of range" "the message names the setting"
run sgx run --downstream http://127.0.0.1:9 --on-storm panic
assert_rc 2 "--on-storm panic is a usage error"
assert_contains "$ERR" "hold,drain,drop" "the message names the choices"

finish
