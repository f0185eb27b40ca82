#!/usr/bin/env bash
# stormguard config: the effective configuration (defaults, -c FILE, flags)
# as INI and as JSON, with no secret printed (the admin token, the token
# file's contents, a password in the Redis URL); exit 2 with FILE:LINE:
# [section] key: reason for a bad file, and for what `run` refuses before
# it opens the store or binds (no downstream, a downstream it cannot use,
# an unreadable or blank token file, an admin API beyond loopback without a
# token, the storm detector's ranges, a bad listen address, missing TLS
# files), with the same message `run` gives. It connects to nothing and
# creates no store.
source "$SG_TESTS/lib.sh"

DOWN=http://127.0.0.1:8089
SECRET=s3cr3t-Tok3n-4711
NO_REDIS=redis://127.0.0.1:1/0 # nothing listens: a connect would fail

# config_error MSG NEEDLE ARGS...: `config ARGS` exits 2, says NEEDLE on
# stderr, prints nothing on stdout and creates no store.
config_error() {
    local msg=$1 needle=$2
    shift 2
    run sgx config --db "$SG_DB" "$@"
    assert_rc 2 "$msg: exit 2"
    assert_contains "$ERR" "$needle" "$msg: says '$needle'"
    [ -z "$OUT" ] || fail "$msg: expected nothing on stdout, got: $OUT"
    [ ! -e "$SG_DB" ] || fail "$msg: the store $SG_DB was created"
}

echo "# --help"
run sgx config --help
assert_rc 0 "config --help exits 0"
assert_contains "$OUT" "usage: stormguard config" "--help: usage line"
assert_contains "$OUT" "examples:" "--help: examples"
assert_contains "$OUT" "  stormguard config -c /etc/stormguard/stormguard.ini" "--help: the pre-start example"
run sgx --help
assert_contains "$OUT" "  config " "stormguard --help lists config"

echo "# the defaults, as INI and as JSON"
run sgx config --db "$SG_DB" --redis "$NO_REDIS" --downstream "$DOWN"
assert_rc 0 "config with a downstream exits 0 (without reaching Redis)"
INI=$OUT
[ ! -e "$SG_DB" ] || fail "config created the store"
ok "no store created"
for s in redis store profile snapshot flush gate forward guard storm admin log; do
    assert_contains "$INI" "[$s]" "INI has [$s]"
done
assert_contains "$INI" "downstream = $DOWN" "the flag's downstream"
assert_contains "$INI" "on_storm = hold" "default on_storm"
assert_contains "$INI" "; token_file (not set)" "an unset key is a comment"
# every key of the INI is a flag of --help: the dump names the key table
run sgx config --json --db "$SG_DB" --redis "$NO_REDIS" --downstream "$DOWN"
assert_rc 0 "config --json exits 0"
JSON=$OUT
assert_eq 1 "$(printf '%s\n' "$JSON" | wc -l)" "--json: one line"
"$PY" - "$INI" "$JSON" <<'EOF' || fail "--json and the INI disagree"
import json, sys
ini, doc = sys.argv[1], json.loads(sys.argv[2])
assert isinstance(doc, dict)
want, section = {}, None
for line in ini.splitlines():
    if line.startswith("["):
        section = line.strip("[]")
        want[section] = {}
    elif line.startswith("; ") and line.endswith(" (not set)"):
        want[section][line[2:-len(" (not set)")]] = None
    elif " =" in line:
        k, v = line.split(" =", 1)
        want[section][k] = v[1:] if v.startswith(" ") else v
assert list(doc) == list(want), (list(doc), list(want))
for s in want:
    assert doc[s] == want[s], (s, doc[s], want[s])
assert doc["gate"]["downstream"] == "http://127.0.0.1:8089"
assert doc["admin"]["token_file"] is None
EOF
ok "--json: {section: {key: value}}, the same keys and values as the INI, null when not set"

echo "# a file, and flags over it"
cat >"$TMP/a.ini" <<EOF
; a comment
[gate]
downstream = http://10.1.2.3:8089/echo
listen = 127.0.0.1:18090
[storm]
on_storm = drain
drain_rate = 7
EOF
run sgx config -c "$TMP/a.ini" --db "$SG_DB" --drain-rate 9
assert_rc 0 "config -c FILE exits 0"
assert_contains "$OUT" "downstream = http://10.1.2.3:8089/echo" "the file's downstream"
assert_contains "$OUT" "listen = 127.0.0.1:18090" "the file's listen"
assert_contains "$OUT" "on_storm = drain" "the file's on_storm"
assert_contains "$OUT" "drain_rate = 9" "the flag wins over the file"
STORMGUARD_CONFIG=$TMP/a.ini run sgx config --db "$SG_DB"
assert_rc 0 "STORMGUARD_CONFIG names the file"
assert_contains "$OUT" "drain_rate = 7" "STORMGUARD_CONFIG's value"

echo "# secrets are never printed"
printf '%s\n' "$SECRET" >"$TMP/token"
run sgx config --db "$SG_DB" --downstream "$DOWN" --admin-token-file "$TMP/token" \
    --redis "redis://admin:$SECRET@127.0.0.1:1/2"
assert_rc 0 "a token file and a password in the URL"
assert_not_contains "$OUT$ERR" "$SECRET" "neither the token file's contents nor the password printed"
assert_contains "$OUT" "token_file = $TMP/token" "token_file by its path"
assert_contains "$OUT" "url = redis://admin@127.0.0.1:1/2" "the URL without its password"
run sgx config --json --db "$SG_DB" --downstream "$DOWN" --admin-token "$SECRET" \
    --redis "redis://:$SECRET@127.0.0.1:1/0"
assert_rc 0 "an admin token and a password (--json)"
assert_not_contains "$OUT$ERR" "$SECRET" "--json: no secret"
assert_eq "(set)" "$(json_get "$OUT" "d['admin']['token']")" "the token shows as (set)"
printf '[admin]\ntoken = %s\n[redis]\nurl = redis://u:%s@h:6379/0\n' "$SECRET" "$SECRET" >"$TMP/s.ini"
run sgx config -c "$TMP/s.ini" --db "$SG_DB" --downstream "$DOWN"
assert_rc 0 "secrets given in the file"
assert_not_contains "$OUT$ERR" "$SECRET" "the file's secrets not printed"
assert_contains "$OUT" "; token = (set), not shown" "INI: the token is a comment, never a value"
printf '%s\n' "$OUT" >"$TMP/dumped.ini"
run sgx config -c "$TMP/dumped.ini" --json
assert_rc 0 "the dump read back as a file"
assert_eq None "$(json_get "$OUT" "str(d['admin']['token'])")" "read back, the dump sets no token"
run sgx config --db "$SG_DB" --downstream "$DOWN" --admin "http://ops:pw@127.0.0.1:8091"
assert_rc 2 "--admin with a user and password: exit 2"
assert_contains "$ERR" "takes no user or password" "the reason"
assert_not_contains "$ERR" "pw@" "the password is not repeated"

echo "# errors in the file: FILE:LINE: [section] key: reason"
printf '[gate]\ndownstream = %s\n\n[storm]\nbogus = 1\n' "$DOWN" >"$TMP/b.ini"
config_error "unknown key" "$TMP/b.ini:5: [storm] bogus: unknown key" -c "$TMP/b.ini"
printf '[gate]\ndownstream = %s\n[storm]\non_storm = panic\n' "$DOWN" >"$TMP/c.ini"
config_error "bad on_storm" "$TMP/c.ini:4: [storm] on_storm: 'panic' must be one of hold,drain,drop" \
    -c "$TMP/c.ini"
printf '[forward]\ntimeout = soon\n' >"$TMP/d.ini"
config_error "bad duration" "$TMP/d.ini:2: [forward] timeout: 'soon' is not a duration" \
    -c "$TMP/d.ini" --downstream "$DOWN"
printf '[nosuch]\n' >"$TMP/e.ini"
config_error "unknown section" "$TMP/e.ini:1: unknown section [nosuch]" -c "$TMP/e.ini"
config_error "missing file" "reading config $TMP/none.ini" -c "$TMP/none.ini"
config_error "bad flag value" "--storm-window: [storm] window: 'x' is not a duration" \
    --downstream "$DOWN" --storm-window x

echo "# what run refuses before it starts"
config_error "no downstream" "no downstream: give the notifier's URL with --downstream" \
    --redis "$NO_REDIS"
config_error "a downstream run cannot use" "downstream 'ftp://echo:8089' must be an http:// or https:// URL" \
    --downstream ftp://echo:8089
config_error "a downstream with a user" "give scheme, host, port and path only" \
    --downstream http://u:p@echo:8089
config_error "unreadable token file" "reading admin token file $TMP/nope" \
    --downstream "$DOWN" --admin-token-file "$TMP/nope"
printf '  \n' >"$TMP/blank"
config_error "blank token file" "admin token file $TMP/blank holds no token" \
    --downstream "$DOWN" --admin-token-file "$TMP/blank"
config_error "admin beyond loopback without a token" "beyond loopback, but no admin token" \
    --downstream "$DOWN" --admin 0.0.0.0:8091
run sgx config --db "$SG_DB" --downstream "$DOWN" --admin 0.0.0.0:8091 --admin-token-file "$TMP/token"
assert_rc 0 "admin beyond loopback with a token file"
config_error "same_job_builds 1 (the storm detector's range)" "same_job_builds 1 is out of range" \
    --downstream "$DOWN" --storm-same-job 1
config_error "generic pointers alone" "generic events need source_pointer, job_pointer and number_pointer" \
    --downstream "$DOWN" --source-pointer /a
config_error "a listen address that is not ADDR:PORT" "[gate] listen (--listen): listen address 'everywhere' is not ADDR:PORT" \
    --downstream "$DOWN" --listen everywhere
config_error "an admin address that is not an IP" "[admin] listen (--admin): listen address 'admin.local:8091'" \
    --downstream "$DOWN" --admin admin.local:8091 --admin-token x
config_error "TLS without its key" "TLS needs both tls_cert and tls_key" \
    --downstream "$DOWN" --tls-cert "$TMP/cert.pem"
config_error "TLS files missing" "loading TLS certificate $TMP/cert.pem and key $TMP/key.pem" \
    --downstream "$DOWN" --tls-cert "$TMP/cert.pem" --tls-key "$TMP/key.pem"
config_error "a canary with a hash tag of its own" \
    "[redis] canary (--canary): the canary key stormguard:{x} may not contain '{'" \
    --downstream "$DOWN" --canary 'stormguard:{x}'
if command -v openssl >/dev/null; then
    openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 1 \
        -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
    run sgx config --db "$SG_DB" --downstream "$DOWN" --tls-cert "$TMP/cert.pem" --tls-key "$TMP/key.pem"
    assert_rc 0 "TLS files that load"
fi

echo "# what run refuses, set in the file: FILE:LINE: [section] key: reason"
printf '[gate]\ndownstream = ftp://echo:8089\n' >"$TMP/f.ini"
config_error "a bad downstream in the file" "$TMP/f.ini:2: [gate] downstream: downstream 'ftp://echo:8089'" \
    -c "$TMP/f.ini"
printf '[gate]\ndownstream = %s\n\n[storm]\nsame_job_builds = 1\n' "$DOWN" >"$TMP/g.ini"
config_error "the storm detector's range in the file" \
    "$TMP/g.ini:5: [storm] same_job_builds: storm detector: same_job_builds 1 is out of range" -c "$TMP/g.ini"
printf '[gate]\ndownstream = %s\n[admin]\nlisten = 0.0.0.0:8091\n' "$DOWN" >"$TMP/h.ini"
config_error "admin beyond loopback in the file" "$TMP/h.ini:4: [admin] listen: the admin API listens on" \
    -c "$TMP/h.ini"
config_error "the file's value overridden by a flag is the flag's" \
    "[storm] same_job_builds (--storm-same-job): storm detector: same_job_builds 1" \
    -c "$TMP/g.ini" --storm-same-job 1

echo "# run refuses the same, with the same words"
for args in "--storm-same-job 1" "--admin 0.0.0.0:8091" "--listen everywhere"; do
    # shellcheck disable=SC2086
    run sgx config --db "$SG_DB" --downstream "$DOWN" $args
    want=${ERR#stormguard config: }
    # shellcheck disable=SC2086
    run timeout 20 "$SG_BIN" run --db "$SG_DB" --watch off --downstream "$DOWN" \
        --listen 127.0.0.1:0 --admin 127.0.0.1:0 $args
    [ "$args" != "--admin 0.0.0.0:8091" ] || run timeout 20 "$SG_BIN" run --db "$SG_DB" \
        --watch off --downstream "$DOWN" --listen 127.0.0.1:0 --admin 0.0.0.0:0
    assert_rc 2 "run $args exits 2"
    [ "$args" = "--admin 0.0.0.0:8091" ] && want=${want//8091/0}
    assert_contains "$ERR" "$want" "run $args: the same reason as config"
    rm -f "$SG_DB" "$SG_DB"-*
done

finish
