# Shared helpers of the end-to-end tests (tests/e2e/test_*.sh).
#
# Sourced by every test. Each test gets its own temp dir ($TMP) and starts its
# own redis-server(s) (and PostgreSQL, start_postgres) on free 127.0.0.1
# ports; an EXIT trap stops every server and background process the test
# started and removes $TMP on any exit (success, failure, or a signal); a
# watchdog per server does the same if the test's shell is killed outright
# (SIGKILL, a ctest timeout).
#
# Environment (set by tests/CMakeLists.txt):
#   SG_BIN       path of the built stormguard binary
#   SG_TESTS     path of the tests directory
#   SG_KEEP_TMP  set to keep $TMP after the test (debugging)
#   SG_STORE_BACKEND  pg: the store is a PostgreSQL started for the test
#                (sg and start_gate pass --store $PG_URL; `sql` queries it)
#   PG_BINDIR    (optional) PostgreSQL's programs (initdb, postgres, psql,
#                pg_isready); default: pg_config --bindir, else the newest
#                /usr/lib/postgresql/*/bin, else postgres's on PATH
#
# Variables: TMP, SG_DB (the store, $TMP/sg.db), PORT (current server),
# SG_URL (when set, sg's default --redis), RCLI_AUTH (password for rcli/rpy),
# PY (python3 interpreter), SEED_POSTED_PER_JOB; after start_postgres: PG_PORT,
# PG_PID (the postmaster), PG_URL (postgresql://stormguard@127.0.0.1:PG_PORT/
# stormguard), PG_SOCKDIR (its unix socket's directory, $TMP/pg), PG_LOG (its
# log since the last start).
#
# Helpers:
#   start_redis [args...]   start a redis-server, sets PORT (and REDIS_PID)
#   make_tls_certs DIR      a test CA and certificates made by openssl (see there)
#   start_redis_tls DIR [args...]  a TLS-only redis-server (--port 0, --tls-port)
#                           with DIR's server certificate; sets RCLI_TLS so rcli
#                           speaks TLS to it
#   stop_redis [port]       stop one (default: the current $PORT)
#   rcli ...                redis-cli -p $PORT (uses $RCLI_AUTH as password)
#   rpy 'python code' [args] python with c (a tiny RESP client on $PORT),
#                           r = c.call, content(key) = (type, value)
#   pipe_py 'python expr'   send an iterable of commands (lists of bytes/str/
#                           int) through redis-cli --pipe; fails on errors
#   seed_igor N [master] [prefix]  N Igor Jenkins jobs (cursor + markers)
#   sql QUERY               one query on the test's store, either backend
#   sql_bytes EXPR, sql_newline  bytes and a newline in the store's SQL dialect
#   new_store NAME          a fresh store from here on ($TMP/NAME.db, or a new
#                           database NAME on the test's PostgreSQL)
#   sg CMD ...              $SG_BIN CMD --db $SG_DB --redis $SG_URL ... (each
#                           default only if the arguments do not give it)
#   sgx ...                 $SG_BIN with no defaults
#   run CMD ...             run without failing; sets RC, OUT, ERR
#   ok msg / fail msg / finish / skip reason (exit 77: ctest shows it skipped)
#   assert_eq expected actual msg, assert_ne, assert_le a b msg,
#   assert_contains haystack needle msg, assert_not_contains,
#   assert_rc expected msg  (checks $RC of the last `run`, shows its output)
#   json_get json expr      evaluate a python expression on d = json.loads(json)
#   start_postgres [postgres args...]  a fresh cluster in $TMP/pg/data
#                           (superuser stormguard, trust, UTF8, C locale) on a
#                           free port, with database stormguard; sets PG_* above
#   stop_postgres           fast shutdown (SIGINT), waited for (<= 15 s)
#   restart_postgres        stop_postgres, then the same port, data and args
#   kill_postgres           SIGKILL the postmaster and its children (a crash;
#                           restart_postgres recovers)
#   psql_q SQL [psql args...]  psql -X -A -t -q -v ON_ERROR_STOP=1 on $PG_URL;
#                           prints the rows ('|' between columns)
#   bg_track PID            kill PID on exit too
#   _port_in_use PORT       true if something listens on 127.0.0.1:PORT

set -euo pipefail
set -E
trap 'echo "error: ${BASH_SOURCE[0]##*/}:$LINENO: \`$BASH_COMMAND\` exited with $?" >&2' ERR

: "${SG_BIN:?SG_BIN must name the stormguard binary}"
: "${SG_TESTS:=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
[ -x "$SG_BIN" ] || { echo "SG_BIN=$SG_BIN is not executable" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server not found" >&2; exit 1; }
command -v redis-cli >/dev/null || { echo "redis-cli not found" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 not found" >&2; exit 1; }
# the interpreter itself, not a (slow) pyenv-style shim
PY=$(python3 -c 'import sys; print(sys.executable)')

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sg-e2e.XXXXXX")
SG_DB=$TMP/sg.db
PORT=
REDIS_PID=
RCLI_AUTH=
RCLI_TLS=()
_SG_TLS_DIR=
PASSED=0
_SG_PIDS=()     # redis-server pids
_SG_PORTS=()    # their ports, same order
_SG_BG=()       # other background processes
_SG_PG_PIDS=()  # postmaster pids (stopped with SIGINT, a fast shutdown)
_SG_PG_SHM=()   # their SysV segments ("key shmid"), removed if a SIGKILL left them

_sg_cleanup() {
    local rc=$?
    trap - ERR
    set +e
    local pid
    for pid in "${_SG_BG[@]}" "${_SG_PIDS[@]}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null
    done
    # postgres's SIGTERM would wait for its clients to leave; SIGINT does not
    for pid in "${_SG_PG_PIDS[@]}"; do
        [ -n "$pid" ] && kill -INT "$pid" 2>/dev/null
    done
    # bounded wait (2 s), then SIGKILL whatever is left
    local i
    for i in $(seq 1 20); do
        local alive=0
        for pid in "${_SG_BG[@]}" "${_SG_PIDS[@]}" "${_SG_PG_PIDS[@]}"; do
            [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && alive=1
        done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for pid in "${_SG_BG[@]}" "${_SG_PIDS[@]}"; do
        [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
    done
    # postgres gets 3 s more for its shutdown checkpoint (and bash does not
    # tell about a job killed)
    for pid in "${_SG_PG_PIDS[@]}"; do
        [ -n "$pid" ] || continue
        for i in $(seq 1 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        _sg_pg_kill "$pid"
    done 2>/dev/null
    for i in "${_SG_PG_SHM[@]}"; do
        _sg_pg_ipcrm $i
    done
    wait 2>/dev/null
    if [ -n "${SG_KEEP_TMP:-}" ]; then
        echo "keeping $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    if [ $rc -eq 77 ]; then
        echo "$PASSED passed, then skipped" >&2
    elif [ $rc -ne 0 ]; then
        echo "$PASSED passed, 1 failed (exit $rc)" >&2
    fi
    exit $rc
}
trap _sg_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ---- assertions ---------------------------------------------------------

ok() {
    PASSED=$((PASSED + 1))
    echo "ok $PASSED - $*"
}

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

assert_eq() {
    [ "$1" == "$2" ] || fail "$3: expected '$1', got '$2'"
    ok "$3"
}

assert_ne() {
    [ "$1" != "$2" ] || fail "$3: expected something other than '$1'"
    ok "$3"
}

assert_contains() {
    case "$1" in
    *"$2"*) ok "$3" ;;
    *) fail "$3: expected to find '$2' in: $1" ;;
    esac
}

assert_not_contains() {
    case "$1" in
    *"$2"*) fail "$3: did not expect '$2' in: $1" ;;
    *) ok "$3" ;;
    esac
}

# assert_rc expected msg: checks $RC of the last `run`, shows its output if not.
assert_rc() {
    [ "$RC" == "$1" ] || fail "$2: expected exit $1, got $RC
--- stdout:
$OUT
--- stderr:
$ERR"
    ok "$2"
}

# assert_le a b msg: integer a <= b
assert_le() {
    [ "$1" -le "$2" ] || fail "$3: expected $1 <= $2"
    ok "$3"
}

finish() {
    echo "$PASSED passed, 0 failed"
}

# skip REASON: ends the test as skipped (exit 77, ctest's SKIP_RETURN_CODE
# for these tests): it says why, and ctest counts it as not run, not passed.
skip() {
    echo "SKIP: $*" >&2
    exit 77
}

# run CMD...: runs without tripping set -e; RC, OUT (stdout), ERR (stderr).
run() {
    local rc=0
    "$@" >"$TMP/.run.out" 2>"$TMP/.run.err" || rc=$?
    RC=$rc
    OUT=$(cat "$TMP/.run.out")
    ERR=$(cat "$TMP/.run.err")
    return 0
}

# json_get JSON EXPR: prints eval(EXPR) with d = the parsed JSON; dicts,
# lists, booleans and null as JSON, other values as str().
json_get() {
    "$PY" -c '
import json, sys
d = json.loads(sys.argv[1])
v = eval(sys.argv[2])
if isinstance(v, (dict, list, bool)) or v is None:
    print(json.dumps(v, sort_keys=True))
else:
    print(v)
' "$1" "$2"
}

# ---- redis ----------------------------------------------------------------

_port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# _sg_watchdog PARENT CHILD: kills CHILD and removes $TMP once PARENT is gone.
_sg_watchdog() {
    trap - ERR
    set +e
    while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do
        sleep 0.5
    done
    kill -0 "$1" 2>/dev/null && exit 0 # the server stopped, the test goes on
    kill "$2" 2>/dev/null
    sleep 2
    kill -9 "$2" 2>/dev/null
    rm -rf "$TMP"
    exit 0
}

# start_redis [extra redis-server args...]: starts a server on a free port of
# 127.0.0.1, waits (<= 5 s) until it answers, sets PORT and REDIS_PID.
start_redis() {
    local attempt port pid i up dir
    for attempt in $(seq 1 20); do
        port=$((20000 + RANDOM % 20001))
        _port_in_use "$port" && continue
        dir=$TMP/redis-$port
        mkdir -p "$dir"
        # no 5 s wait before a diskless SYNC (the sync snapshot method);
        # a test that wants Redis's default passes its own
        local ports=(--port "$port") ping=(redis-cli -p "$port")
        if [ -n "$_SG_TLS_DIR" ]; then
            ports=(--port 0 --tls-port "$port" --tls-cert-file "$_SG_TLS_DIR/server.pem"
                --tls-key-file "$_SG_TLS_DIR/server.key" --tls-ca-cert-file "$_SG_TLS_DIR/ca.pem"
                --tls-auth-clients no --tls-replication yes)
            ping=(redis-cli -p "$port" --tls --cacert "$_SG_TLS_DIR/ca.pem")
        fi
        redis-server "${ports[@]}" --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize no --dir "$dir" --logfile "$dir/redis.log" \
            --repl-diskless-sync-delay 0 "$@" \
            </dev/null >/dev/null 2>&1 &
        pid=$!
        _SG_PIDS+=("$pid")
        _SG_PORTS+=("$port")
        up=0
        for i in $(seq 1 50); do
            if ! kill -0 "$pid" 2>/dev/null; then
                break # exited: port taken meanwhile, or bad arguments
            fi
            case "$("${ping[@]}" ping 2>&1 || true)" in
            *PONG* | *NOAUTH*) up=1; break ;;
            esac
            sleep 0.1
        done
        if [ $up = 1 ]; then
            # stops the server even if this shell dies without running its
            # EXIT trap (SIGKILL, e.g. a ctest timeout)
            _sg_watchdog $$ "$pid" </dev/null >/dev/null 2>&1 &
            _SG_BG+=("$!")
            PORT=$port
            REDIS_PID=$pid
            echo "# redis-server pid $pid on 127.0.0.1:$port"
            return 0
        fi
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        if grep -q "Address already in use" "$dir/redis.log" 2>/dev/null; then
            continue
        fi
        echo "redis-server $* did not start:" >&2
        tail -n 20 "$dir/redis.log" >&2 || true
        return 1
    done
    echo "no free port for redis-server after 20 attempts" >&2
    return 1
}

# make_tls_certs DIR: a CA (ca.pem, ca.key) and, signed by it, server.pem/.key
# for localhost and 127.0.0.1, other.pem/.key for other.example only,
# expired.pem/.key (valid in January 2020 only), client.pem/.key; plus
# ca2.pem, a CA that signed none of them. RSA 2048, made with openssl.
make_tls_certs() {
    local d=$1 n
    mkdir -p "$d/ca"
    touch "$d/ca/index.txt"
    echo 01 >"$d/ca/serial"
    printf '%s\n' '[ca]' 'default_ca = c' '[c]' "dir = $d/ca" "database = $d/ca/index.txt" \
        "new_certs_dir = $d/ca" "serial = $d/ca/serial" 'default_md = sha256' 'policy = p' \
        'copy_extensions = copy' 'unique_subject = no' '[p]' 'commonName = supplied' >"$d/ca.cnf"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/ca.key" -out "$d/ca.pem" -days 2 \
        -subj /CN=stormguard-test-ca 2>/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/ca2.key" -out "$d/ca2.pem" -days 2 \
        -subj /CN=stormguard-other-ca 2>/dev/null
    # _sign NAME SAN [ca options...]
    _sign() {
        n=$1
        openssl req -newkey rsa:2048 -nodes -keyout "$d/$n.key" -out "$d/$n.csr" \
            -subj "/CN=$n" -addext "subjectAltName=$2" 2>/dev/null
        shift 2
        openssl ca -batch -config "$d/ca.cnf" -cert "$d/ca.pem" -keyfile "$d/ca.key" \
            -in "$d/$n.csr" -out "$d/$n.pem" -notext "$@" 2>/dev/null
    }
    _sign server "DNS:localhost,IP:127.0.0.1" -days 2
    _sign other "DNS:other.example" -days 2
    _sign expired "DNS:localhost,IP:127.0.0.1" -startdate 20200101000000Z -enddate 20200102000000Z
    _sign client "DNS:stormguard-client" -days 2
    chmod 600 "$d"/*.key
}

# start_redis_tls DIR [args...]: as start_redis, but the server speaks only
# TLS on PORT with DIR's server certificate (make_tls_certs); rcli then
# speaks TLS to it.
start_redis_tls() {
    local d=$1
    shift
    _SG_TLS_DIR=$d
    start_redis "$@" || { _SG_TLS_DIR=; return 1; }
    _SG_TLS_DIR=
    RCLI_TLS=(--tls --cacert "$d/ca.pem")
}

# stop_redis [port]: stops the server on port (default $PORT), waits <= 5 s.
stop_redis() {
    local port=${1:-$PORT} i j
    for i in "${!_SG_PORTS[@]}"; do
        [ "${_SG_PORTS[$i]}" == "$port" ] || continue
        local pid=${_SG_PIDS[$i]}
        [ -n "$pid" ] || continue
        kill "$pid" 2>/dev/null || true
        for j in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        _SG_PIDS[i]=
    done
}

# restart_redis_empty: stops the server on $PORT and starts an empty one on
# the same port (a restart without persistence). Sets REDIS_PID.
restart_redis_empty() {
    local port=$PORT dir=$TMP/redis-$PORT-again i pid
    stop_redis "$port"
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no --dir "$dir" --logfile "$dir/redis.log" </dev/null >/dev/null 2>&1 &
    pid=$!
    _SG_PIDS+=("$pid")
    _SG_PORTS+=("$port")
    for i in $(seq 1 50); do
        case "$(redis-cli -p "$port" ping 2>&1 || true)" in
        *PONG*) REDIS_PID=$pid; _sg_watchdog $$ "$pid" </dev/null >/dev/null 2>&1 &
            _SG_BG+=("$!"); return 0 ;;
        esac
        sleep 0.1
    done
    echo "redis-server did not start again on port $port" >&2
    return 1
}

bg_track() {
    _SG_BG+=("$1")
}

# rcli ...: redis-cli against $PORT; RCLI_AUTH is the password if set.
rcli() {
    if [ -n "$RCLI_AUTH" ]; then
        redis-cli -p "$PORT" "${RCLI_TLS[@]}" --no-auth-warning -a "$RCLI_AUTH" "$@"
    else
        redis-cli -p "$PORT" "${RCLI_TLS[@]}" "$@"
    fi
}

# A tiny RESP client for binary-safe checks (redis-py is not assumed).
cat >"$TMP/resp.py" <<'PY'
import os, socket, sys

class RespError(Exception):
    pass

class Conn:
    def __init__(self, port, password=None):
        self.s = socket.create_connection(("127.0.0.1", int(port)), timeout=30)
        self.f = self.s.makefile("rb")
        if password:
            self.call("AUTH", password)

    def send(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, (int, float)):
                a = repr(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.s.sendall(b"".join(out))

    def read(self):
        line = self.f.readline()
        if not line:
            raise EOFError("connection closed")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RespError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2]
        if t == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self.read() for _ in range(n)]
        raise ValueError("bad reply %r" % line)

    def call(self, *args):
        self.send(*args)
        r = self.read()
        if isinstance(r, RespError):
            raise r
        return r

    def content(self, k):
        """A key's type and value in a comparable form (order-free where the
        type is unordered: DUMP of a hashtable set or hash is not stable)."""
        t = self.call("TYPE", k)
        if t == "string":
            v = self.call("GET", k)
        elif t == "list":
            v = self.call("LRANGE", k, 0, -1)
        elif t == "set":
            v = sorted(self.call("SMEMBERS", k))
        elif t == "zset":
            v = self.call("ZRANGE", k, 0, -1, "WITHSCORES")
        elif t == "hash":
            h = self.call("HGETALL", k)
            v = sorted(zip(h[0::2], h[1::2]))
        elif t == "stream":
            groups = self.call("XINFO", "GROUPS", k)
            pending = [self.call("XPENDING", k, g[1], "-", "+", 1000) for g in groups]
            pending = [[p[0], p[1]] for ps in pending for p in ps]
            info = self.call("XINFO", "STREAM", k)
            info = dict(zip(info[0::2], info[1::2]))
            v = (self.call("XRANGE", k, "-", "+"),
                 [info.get(f) for f in ("length", "last-generated-id",
                                        "max-deleted-entry-id", "entries-added")],
                 groups, pending)
        else:
            v = self.call("DUMP", k)
        return (t, v)

    def scan_all(self, match=None):
        cur, keys = b"0", []
        while True:
            args = ["SCAN", cur, "COUNT", "1000"] + (["MATCH", match] if match else [])
            cur, page = self.call(*args)
            keys += page
            if cur == b"0":
                return keys

def connect():
    return Conn(os.environ["PORT"], os.environ.get("RCLI_AUTH") or None)
PY

# rpy 'python code': runs code with `c` connected to $PORT, `r = c.call`.
rpy() {
    PORT=$PORT RCLI_AUTH=$RCLI_AUTH PYTHONPATH=$TMP "$PY" -c "
import sys, os, time, json, pickle
from resp import connect, RespError
c = connect()
r = c.call
content = c.content
$1
" "${@:2}"
}

# pipe_py 'python expr': expr is an iterable of commands (lists of
# bytes/str/int); they go to $PORT through redis-cli --pipe. Fails on errors.
pipe_py() {
    local out
    out=$(PYTHONPATH=$TMP "$PY" -c "
import sys
def enc(a):
    if isinstance(a, str): a = a.encode()
    elif isinstance(a, (int, float)): a = repr(a).encode()
    return b'\$%d\r\n%s\r\n' % (len(a), a)
w = sys.stdout.buffer
for cmd in ($1):
    w.write(b'*%d\r\n' % len(cmd) + b''.join(enc(a) for a in cmd))
" | rcli --pipe 2>&1) || { echo "$out" >&2; return 1; }
    case "$out" in
    *"errors: 0,"*) return 0 ;;
    *) echo "redis-cli --pipe reported errors: $out" >&2; return 1 ;;
    esac
}

# seed_igor N [master]: N Igor Jenkins jobs team-a/service-1..N on master
# (default jenkins-prod): a cursor hash with lastPollCycleTimestamp and a
# posted-marker hash with SEED_POSTED_PER_JOB build numbers -> POSTED.
SEED_POSTED_PER_JOB=3
seed_igor() {
    local n=$1 master=${2:-jenkins-prod} prefix=${3:-igor}
    pipe_py "
(cmd for i in range(1, $n + 1)
 for job in ['team-a/service-%d' % i]
 for base in ['$prefix:$master:%s:%s' % (job.upper(), job)]
 for cursor in [1526030000000 + i * 1000]
 for cmd in (
    ['HSET', base, 'lastPollCycleTimestamp', cursor],
    ['HSET', base + ':lastPollCycleTimestamp:%d' % cursor]
        + sum([[str(100 + i + b), 'POSTED'] for b in range($SEED_POSTED_PER_JOB)], []),
 ))
"
}

# ---- postgresql -------------------------------------------------------------

PG_BINDIR=${PG_BINDIR:-}
PG_PORT=
PG_PID=
PG_URL=
PG_SOCKDIR=
PG_LOG=
_SG_PG_ARGS=() # start_postgres's arguments, for restart_postgres
_SG_PG_AS=()   # as root: setpriv to the user initdb and postgres run as
_SG_PG_OWNER=  # that user:group
_SG_PG_N=0     # starts so far (one log each)

# _sg_pg_has DIR: DIR has the programs start_postgres runs.
_sg_pg_has() {
    [ -x "$1/initdb" ] && [ -x "$1/postgres" ] && [ -x "$1/psql" ] && [ -x "$1/pg_isready" ]
}

# _sg_pg_find: sets PG_BINDIR to a directory with the server's programs, or
# fails the test: a test that needs PostgreSQL must not pass without it.
_sg_pg_find() {
    local d cands=()
    if [ -n "$PG_BINDIR" ]; then
        _sg_pg_has "$PG_BINDIR" && return 0
        fail "PG_BINDIR=$PG_BINDIR lacks initdb, postgres, psql or pg_isready"
    fi
    # Debian's libpq-dev pg_config names its libpq's version, which may have
    # no server installed; then the newest server there is
    d=$(pg_config --bindir 2>/dev/null || true)
    [ -z "$d" ] || cands+=("$d")
    while IFS= read -r d; do
        cands+=("$d")
    done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV)
    d=$(command -v postgres 2>/dev/null || true)
    [ -z "$d" ] || cands+=("$(dirname "$(readlink -f "$d")")")
    for d in "${cands[@]}"; do
        if _sg_pg_has "$d"; then
            PG_BINDIR=$d
            return 0
        fi
    done
    fail "PostgreSQL not found (initdb, postgres, psql, pg_isready: not in pg_config --bindir," \
        "/usr/lib/postgresql/*/bin nor on PATH); install it (scripts/setup.sh) or set PG_BINDIR"
}

# _sg_pg_user: initdb and postgres refuse to run as root, so as root (a CI
# container) they run as the postgres user (Debian's package makes it), else
# as nobody; $TMP (0700) then lets them through to $TMP/pg.
_sg_pg_user() {
    local u
    _SG_PG_AS=()
    _SG_PG_OWNER=
    [ "$(id -u)" = 0 ] || return 0
    command -v setpriv >/dev/null || fail "running as root, and no setpriv to run PostgreSQL as another user"
    for u in postgres nobody; do
        id -u "$u" >/dev/null 2>&1 || continue
        _SG_PG_AS=(setpriv --reuid="$(id -u "$u")" --regid="$(id -g "$u")" --clear-groups)
        _SG_PG_OWNER=$(id -u "$u"):$(id -g "$u")
        chmod go+x "$TMP"
        return 0
    done
    fail "running as root, and no user postgres or nobody to run PostgreSQL as"
}

# _sg_pg_ipcrm KEY SHMID: removes the SysV segment a postmaster killed with
# SIGKILL leaves behind (a clean one removes its own), if it still has that
# key and nothing attached.
_sg_pg_ipcrm() {
    [ $# = 2 ] || return 0
    awk -v k="$1" -v id="$2" '$1 == k && $2 == id && $7 == 0 { f = 1 } END { exit !f }' \
        /proc/sysvipc/shm 2>/dev/null || return 0
    ipcrm -m "$2" 2>/dev/null || true
}

# _sg_pg_kill PID: SIGKILL to the postmaster PID and its children (its
# backends exit by themselves once it is gone, but not at once), waited for
# (<= 5 s). A no-op if PID is not running.
_sg_pg_kill() {
    local pid=$1 kids i k alive
    kill -0 "$pid" 2>/dev/null || return 0
    kids=$(cat "/proc/$pid/task/$pid/children" 2>/dev/null || true)
    kill -9 "$pid" $kids 2>/dev/null || true
    for i in $(seq 1 50); do
        alive=0
        for k in "$pid" $kids; do
            # a child the kernel has not reaped yet (Z) is gone for us
            [ -r "/proc/$k/stat" ] && [ "$(awk '{ print $3 }' "/proc/$k/stat" 2>/dev/null)" != Z ] && alive=1
        done
        [ $alive = 0 ] && break
        sleep 0.1
    done
}

# _sg_pg_watchdog PARENT PID KEY SHMID: a fast shutdown of the postmaster PID,
# SIGKILL after 5 s, and $TMP removed, once PARENT (the test's shell) is gone.
_sg_pg_watchdog() {
    trap - ERR
    set +e
    while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do
        sleep 0.5
    done
    kill -0 "$1" 2>/dev/null && exit 0 # the server stopped, the test goes on
    kill -INT "$2" 2>/dev/null
    local i
    for i in $(seq 1 50); do
        kill -0 "$2" 2>/dev/null || break
        sleep 0.1
    done
    _sg_pg_kill "$2"
    _sg_pg_ipcrm "$3" "$4"
    rm -rf "$TMP"
    exit 0
}

# _sg_pg_launch PORT: starts postgres on PORT with $TMP/pg/data and waits
# (<= 30 s) until it accepts connections there. 0 when it does (PG_PID,
# PG_PORT, PG_LOG set, a watchdog started); 1 if it exited (see PG_LOG);
# fails the test if it stays silent.
_sg_pg_launch() {
    local port=$1 pid deadline st=() i
    _SG_PG_N=$((_SG_PG_N + 1))
    PG_LOG=$PG_SOCKDIR/postgres-$_SG_PG_N.log
    # started here, not by pg_ctl, so that $! is the postmaster: exec all the
    # way down (setpriv execs postgres)
    (cd "$PG_SOCKDIR" && exec "${_SG_PG_AS[@]}" "$PG_BINDIR/postgres" -D "$PG_SOCKDIR/data" \
        -p "$port" -k "$PG_SOCKDIR" -c listen_addresses=127.0.0.1 -c max_connections=100 \
        -c shared_buffers=32MB -c dynamic_shared_memory_type=mmap "${_SG_PG_ARGS[@]}") \
        </dev/null >"$PG_LOG" 2>&1 &
    pid=$!
    _SG_PG_PIDS+=("$pid")
    deadline=$(($(date +%s) + 30))
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null || true
            _sg_pg_forget "$pid"
            return 1
        fi
        # its lock file says "ready" once it accepts connections; that it
        # names this pid tells it from another server on the port
        mapfile -t st 2>/dev/null <"$PG_SOCKDIR/data/postmaster.pid" || st=()
        if [ "${st[0]:-}" = "$pid" ] && [[ ${st[7]:-} == ready* ]] &&
            "$PG_BINDIR/pg_isready" -q -h 127.0.0.1 -p "$port" -U stormguard -d postgres -t 2; then
            break
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            _sg_pg_kill "$pid"
            wait "$pid" 2>/dev/null || true
            _sg_pg_forget "$pid"
            tail -n 20 "$PG_LOG" >&2
            fail "postgres did not accept connections on 127.0.0.1:$port within 30 s"
        fi
        sleep 0.1
    done
    # line 7: the SysV segment's key and id
    _SG_PG_SHM+=("${st[6]:-}")
    _sg_pg_watchdog $$ "$pid" ${st[6]:-} </dev/null >/dev/null 2>&1 &
    _SG_BG+=("$!")
    PG_PID=$pid
    PG_PORT=$port
    return 0
}

# _sg_pg_forget PID: no longer ours to stop (it is gone, its pid may be reused).
_sg_pg_forget() {
    local i
    for i in "${!_SG_PG_PIDS[@]}"; do
        [ "${_SG_PG_PIDS[$i]}" != "$1" ] || _SG_PG_PIDS[i]=
    done
}

# start_postgres [postgres args...]: see the header; the arguments (e.g.
# -c log_statement=all) go to postgres, here and in restart_postgres.
start_postgres() {
    local attempt port
    [ -z "$PG_PID" ] || fail "start_postgres: postgres runs already (pid $PG_PID)"
    [ ! -e "$TMP/pg/data" ] || fail "start_postgres: $TMP/pg/data exists (restart_postgres reuses it)"
    _sg_pg_find
    _sg_pg_user
    _SG_PG_ARGS=("$@")
    PG_SOCKDIR=$TMP/pg
    mkdir -p "$PG_SOCKDIR"
    [ -z "$_SG_PG_OWNER" ] || chown "$_SG_PG_OWNER" "$PG_SOCKDIR"
    # --no-sync: the cluster is gone before the machine could crash
    if ! (cd "$PG_SOCKDIR" && exec timeout -k 5 120 "${_SG_PG_AS[@]}" "$PG_BINDIR/initdb" \
        -D "$PG_SOCKDIR/data" -U stormguard --auth=trust -E UTF8 --locale=C --no-sync) \
        </dev/null >"$PG_SOCKDIR/initdb.log" 2>&1; then
        tail -n 20 "$PG_SOCKDIR/initdb.log" >&2
        fail "initdb ($PG_BINDIR/initdb) failed"
    fi
    for attempt in $(seq 1 20); do
        port=$(_sg_free_port)
        if _sg_pg_launch "$port"; then
            PG_URL=postgresql://stormguard@127.0.0.1:$PG_PORT/stormguard
            if ! PGCONNECT_TIMEOUT=10 timeout -k 5 60 "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 \
                -d "postgresql://stormguard@127.0.0.1:$PG_PORT/postgres" \
                -c 'CREATE DATABASE stormguard' </dev/null >/dev/null; then
                fail "could not create database stormguard"
            fi
            echo "# postgres pid $PG_PID on 127.0.0.1:$PG_PORT ($PG_BINDIR), log $PG_LOG"
            return 0
        fi
        # another process took the port between the probe and the bind
        grep -q "Address already in use" "$PG_LOG" 2>/dev/null && continue
        tail -n 20 "$PG_LOG" >&2
        fail "postgres $* did not start"
    done
    fail "no free port for postgres after 20 attempts"
}

# stop_postgres: a fast shutdown (SIGINT: clients are disconnected, then a
# checkpoint), waited for (<= 15 s); fails the test (after SIGKILL) if it
# takes longer. A no-op when it is not running.
stop_postgres() {
    local pid=$PG_PID i
    [ -n "$pid" ] || return 0
    PG_PID=
    kill -INT "$pid" 2>/dev/null || true
    for i in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        _sg_pg_kill "$pid"
        wait "$pid" 2>/dev/null || true
        _sg_pg_forget "$pid"
        tail -n 20 "$PG_LOG" >&2
        fail "postgres did not stop within 15 s of SIGINT"
    fi
    wait "$pid" 2>/dev/null || true
    _sg_pg_forget "$pid"
}

# restart_postgres: stop_postgres (if it runs), then postgres again on the
# same port with the same data and arguments; waits as start_postgres does.
restart_postgres() {
    [ -n "$PG_PORT" ] || fail "restart_postgres: no start_postgres before"
    stop_postgres
    if ! _sg_pg_launch "$PG_PORT"; then
        tail -n 20 "$PG_LOG" >&2
        fail "postgres did not start again on 127.0.0.1:$PG_PORT"
    fi
    echo "# postgres pid $PG_PID on 127.0.0.1:$PG_PORT again, log $PG_LOG"
}

# kill_postgres: SIGKILL to the postmaster and its children, waited for: a
# crash (restart_postgres recovers). A no-op when it is not running.
kill_postgres() {
    local pid=$PG_PID
    [ -n "$pid" ] || return 0
    PG_PID=
    # (and no "Killed" line from bash about its job)
    {
        _sg_pg_kill "$pid"
        wait "$pid" || true
    } 2>/dev/null
    _sg_pg_forget "$pid"
}

# psql_q SQL [psql args...]: SQL on $PG_URL; prints the rows unaligned,
# without headers, '|' between columns; fails on the first error.
psql_q() {
    [ -n "$PG_URL" ] || fail "psql_q: no start_postgres before"
    PGCONNECT_TIMEOUT=10 "$PG_BINDIR/psql" -X -A -t -q -v ON_ERROR_STOP=1 -d "$PG_URL" \
        -c "$1" "${@:2}" </dev/null
}

# ---- a stream of build posts (the crash and fault tests) ----------------------

# stream_start N JOBS P: P posters in the background post N Igor build events,
# poster K the events i = K, K+P, K+2P...; event i is build 1000 + i/JOBS of
# team-a/service-(i%JOBS + 1), started after the job's cursor (new), retried
# every 0.1 s until answered 200 (at most 300 tries), as Igor retries. One
# line per attempt in $TMP/postsK.tsv: i, HTTP status, answer. With
# STREAM_URLS (gate URLs, space-separated) the posts go round robin over
# them, a retry to the next one; else to $GATE_URL.
stream_start() {
    STREAM_N=$1 STREAM_JOBS=$2 STREAM_P=$3
    local k
    for k in $(seq 0 $((STREAM_P - 1))); do
        : >"$TMP/posts$k.tsv"
        _stream_poster "$k" </dev/null >/dev/null 2>&1 &
        bg_track $!
    done
}

_stream_poster() {
    trap - ERR
    set +e
    local k=$1 i job num ts try code url urls
    read -r -a urls <<<"${STREAM_URLS:-$GATE_URL}"
    for i in $(seq "$k" "$STREAM_P" $((STREAM_N - 1))); do
        job=team-a/service-$((i % STREAM_JOBS + 1))
        num=$((1000 + i / STREAM_JOBS))
        ts=$((1526030000000 + (i % STREAM_JOBS + 1) * 1000 + 10000 + i))
        igor_event "$job" "$num" "$ts" >"$TMP/poster$k.body"
        for try in $(seq 1 300); do
            # round robin over STREAM_URLS; a retry goes to the next one
            url=${urls[$(((i + try) % ${#urls[@]}))]}
            code=$(curl -s -o "$TMP/poster$k.reply" -w '%{http_code}' --max-time 5 -X POST \
                -H 'Content-Type: application/json' --data-binary "@$TMP/poster$k.body" \
                "$url/")
            printf '%s\t%s\t%s\n' "$i" "${code:-000}" "$(cat "$TMP/poster$k.reply" 2>/dev/null)" \
                >>"$TMP/posts$k.tsv"
            rm -f "$TMP/poster$k.reply"
            [ "$code" = 200 ] && break
            sleep 0.1
        done
    done
    echo done >"$TMP/poster$k.done"
}

_stream_done() { [ "$(ls "$TMP"/poster?.done 2>/dev/null | wc -l)" = "$STREAM_P" ]; }

# gate_pending0: whether the gate has no event left to deliver.
gate_pending0() { [ "$(json_get "$(gate_status)" "d['pending']")" = 0 ]; }

# stream_accepted: the attempts answered 200 so far; stream_has_accepted M:
# whether at least M were.
stream_accepted() { cat "$TMP"/posts?.tsv | awk -F'\t' '$2 == 200' | wc -l; }
stream_has_accepted() { [ "$(stream_accepted)" -ge "$1" ]; }

# stream_finish SECS: waits for the posters, then for every pending event to
# be delivered; $TMP/posts.tsv gets every attempt and $TMP/events.json the
# journal's events.
stream_finish() {
    wait_for "$1" "the posters finished" _stream_done
    cat "$TMP"/posts?.tsv >"$TMP/posts.tsv"
    wait_for 30 "every pending event delivered" gate_pending0
    sleep 0.5
    admin_get "/v1/events?limit=10000"
    [ "$HTTP_STATUS" = 200 ] || fail "/v1/events after the stream: $HTTP_STATUS"
    echo "$REPLY" >"$TMP/events.json"
}

# stream_verify: after stream_finish, "ok" when every event was answered 200,
# each build accepted as new once, journaled, forwarded and at the sink, and
# duplicates at the sink only as re-deliveries of one event id; else what
# broke. A summary goes to stderr.
stream_verify() {
    sink_py '
tmp, n, jobs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
attempts = [l.rstrip("\n").split("\t", 2) for l in open(tmp + "/posts.tsv")]
events = {e["id"]: e for e in json.load(open(tmp + "/events.json"))["events"]}
errors, info = [], []
accepted = {}   # i -> list of answers 200
for i, code, reply in attempts:
    if code == "200":
        accepted.setdefault(int(i), []).append(json.loads(reply))
missing = [i for i in range(n) if i not in accepted]
if missing:
    errors.append("never answered 200: %r" % missing[:20])
def build_of(body):
    b = json.loads(body)
    return (b["content"]["project"]["name"], b["content"]["project"]["lastBuild"]["number"])
delivered = {}  # build -> set of event ids
for r in ok:
    delivered.setdefault(build_of(r["body"]), set()).add(r["event_id"])
replays = 0
for i, answers in sorted(accepted.items()):
    job, num = "team-a/service-%d" % (i % jobs + 1), 1000 + i // jobs
    for a in answers:
        id_ = a["id"]
        if a["kind"] == "replay":
            replays += 1
            continue
        if a["kind"] != "new":
            errors.append("event %d answered %r" % (i, a))
            continue
        e = events.get(id_)
        if not e:
            errors.append("event %d (id %d) answered 200 but not in the journal" % (i, id_))
        elif (e["job"], e["number"]) != (job, num) or e["state"] != "forwarded":
            errors.append("journal row %d: %r" % (id_, e))
        if str(id_) not in by_id:
            errors.append("event %d (id %d) answered 200 but never reached the sink" % (i, id_))
    if (job, num) not in delivered:
        errors.append("build %s #%d lost: never reached the sink" % (job, num))
    if len(answers) > 1 and sum(a["kind"] == "new" for a in answers) > 1:
        errors.append("build %s #%d accepted as new twice: %r" % (job, num, answers))
for b, ids in delivered.items():
    if len(ids) != 1:
        errors.append("build %r reached the sink as different events %r" % (b, sorted(ids)))
redelivered = sum(len(v) - 1 for v in by_id.values())
if len(delivered) != n:
    errors.append("the sink got %d distinct builds, expected %d" % (len(delivered), n))
print("\n".join(errors) or "ok")
print("# %d re-deliveries of the same event id, %d retried posts answered replay, %d non-2xx at the sink"
      % (redelivered, replays, len(recs) - len(ok)), file=sys.stderr)
' "$TMP" "$STREAM_N" "$STREAM_JOBS"
}

# ---- the store's backend -----------------------------------------------------

# With SG_STORE_BACKEND=pg (the e2e_*_pg variants, tests/CMakeLists.txt) the
# test's store is a PostgreSQL started for it when lib.sh is sourced (below):
# sg and start_gate give --store $PG_URL instead of --db $SG_DB.

# store_flags: the flags naming the test's store, one per line.
store_flags() {
    if [ "${SG_STORE_BACKEND:-}" = pg ]; then
        printf '%s\n' --store "$PG_URL"
    else
        printf '%s\n' --db "$SG_DB"
    fi
}

# new_store NAME: the test's store becomes a fresh one: $TMP/NAME.db, or a
# new database NAME on the test's PostgreSQL.
new_store() {
    SG_DB=$TMP/$1.db
    if [ "${SG_STORE_BACKEND:-}" = pg ]; then
        psql_q "CREATE DATABASE $1"
        PG_URL=postgresql://stormguard@127.0.0.1:$PG_PORT/$1
    fi
}

# sql_bytes EXPR: EXPR as the store's bytes, for the columns that hold what
# a client sent (PostgreSQL's are bytea, which takes no text); sql_newline:
# a newline in either dialect.
sql_bytes() {
    if [ "${SG_STORE_BACKEND:-}" = pg ]; then echo "convert_to($1, 'UTF8')"; else echo "$1"; fi
}
sql_newline() {
    if [ "${SG_STORE_BACKEND:-}" = pg ]; then echo 'chr(10)'; else echo 'char(10)'; fi
}

# sql QUERY: one query on the test's store (sqlite3 on $SG_DB, or psql on
# $PG_URL with bytea shown as text), rows on stdout, '|' between columns.
sql() {
    if [ "${SG_STORE_BACKEND:-}" = pg ]; then
        PGOPTIONS='-c bytea_output=escape' psql_q "$1"
    else
        sqlite3 "$SG_DB" "$1"
    fi
}

# ---- stormguard -------------------------------------------------------------

# sg CMD [args...]: the binary with --db $SG_DB and --redis $SG_URL (default
# redis://127.0.0.1:$PORT) unless the arguments name their own, and with
# --method $SG_METHOD when the test runs as a snapshot method variant.
sg() {
    if [ $# -eq 0 ] || [ "${1#-}" != "$1" ]; then
        "$SG_BIN" "$@"
        return
    fi
    local cmd=$1 a have_db=0 have_redis=0
    shift
    for a in "$@"; do
        case "$a" in
        --db | --db=* | --store | --store=*) have_db=1 ;;
        --redis | --redis=*) have_redis=1 ;;
        esac
    done
    local defaults=()
    [ $have_db = 1 ] || mapfile -t -O ${#defaults[@]} defaults < <(store_flags)
    [ $have_redis = 1 ] || defaults+=(--redis "${SG_URL:-redis://127.0.0.1:$PORT}")
    [ -z "${SG_METHOD:-}" ] || defaults+=(--method "$SG_METHOD")
    "$SG_BIN" "$cmd" "${defaults[@]}" "$@"
}

sgx() {
    "$SG_BIN" "$@"
}

# ---- the webhook gate (stormguard run) --------------------------------------
#
# Helpers of the gate tests (tests/e2e/test_gate_*.sh):
#   start_sink              a downstream HTTP server (python3 stdlib) on a free
#                           127.0.0.1 port: one JSON line per request in
#                           $SINK_LOG ({method, path, event_id, headers, body
#                           (UTF-8, invalid bytes replaced), len, sha256,
#                           status, t}); sets SINK_PORT, SINK_URL, SINK_PID;
#                           with SINK_TLS=CERT:KEY it answers HTTPS
#   sink_set STATUS [MS [RA]]  from now on the sink answers STATUS after MS
#                           ms, with a Retry-After: RA header if RA is given
#                           (a control file: stormguard cannot reach it)
#   sink_py 'code'          python with recs (every logged request), ok (those
#                           answered 2xx) and by_id (event id -> ok records)
#   start_gate [args...]    `stormguard run` on free ports with --db $SG_DB,
#                           --downstream $SINK_URL, --read-timeout 2s, --listen
#                           and --admin 127.0.0.1:<free port> unless args give
#                           them; waits for /healthz (<= 15 s); sets GATE_PID,
#                           GATE_PORT, ADMIN_PORT, GATE_URL (http://listen),
#                           ADMIN (admin ADDR:PORT), GATE_LOG (its stderr),
#                           GATE_ARGS
#   restart_gate            the same again, same ports and arguments
#   stop_gate [SIG]         SIG (default TERM), waits <= 15 s; sets GATE_RC
#   kill_gate               kill -9, waited for
#   gate_post PATH BODY [curl args...]   POST to the gate; sets HTTP_STATUS,
#                           REPLY, REPLY_HEADERS (000 if no answer)
#   admin_get PATH [curl args...]        GET on the admin API (with
#                           $ADMIN_TOKEN as bearer token if set); same vars
#   gate_status             prints /v1/status
#   wait_for SECONDS MSG CMD...          runs CMD every 0.1 s until it
#                           succeeds; fails the test with MSG on timeout
#   igor_event JOB NUMBER TIMESTAMP [MASTER] [CI_TYPE]   an Igor build event

SINK_PORT=
SINK_URL=
SINK_PID=
SINK_LOG=$TMP/sink.jsonl
SINK_CTL=$TMP/sink.ctl
GATE_PID=
GATE_PORT=
ADMIN_PORT=
GATE_URL=
ADMIN=
GATE_LOG=
GATE_RC=
GATE_ARGS=()
ADMIN_TOKEN=
HTTP_STATUS=
REPLY=
REPLY_HEADERS=
_SG_GATE_N=0

cat >"$TMP/sink.py" <<'PY'
import hashlib, json, os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log_path, ctl_path, port_path = sys.argv[1:4]
lock = threading.Lock()

def control():
    """(status, delay ms, Retry-After) from the control file; 200 at once
    without one."""
    try:
        with open(ctl_path) as f:
            parts = f.read().split()
        return (int(parts[0]), int(parts[1]) if len(parts) > 1 else 0,
                parts[2] if len(parts) > 2 else None)
    except (OSError, ValueError, IndexError):
        return 200, 0, None

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n > 0 else b""
        status, delay, retry_after = control()
        if delay:
            time.sleep(delay / 1000)
        rec = {"method": self.command, "path": self.path,
               "event_id": self.headers.get("X-Stormguard-Event-Id"),
               "headers": {k.lower(): v for k, v in self.headers.items()},
               "body": body.decode("utf-8", "replace"), "len": len(body),
               "sha256": hashlib.sha256(body).hexdigest(), "status": status,
               "t": time.time(), "peer": self.client_address[1]}
        with lock:
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
        out = json.dumps({"status": status}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        if retry_after:
            self.send_header("Retry-After", retry_after)
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = any

    def __getattr__(self, name):  # any other method a poller may use
        if name.startswith("do_") and name != "do_HEAD":
            return self.any
        raise AttributeError(name)

    def log_message(self, *args):
        pass

srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
srv.daemon_threads = True
if os.environ.get("SINK_TLS"):  # "CERT:KEY": answer HTTPS
    import ssl
    cert, key = os.environ["SINK_TLS"].split(":")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    srv.socket = tls.wrap_socket(srv.socket, server_side=True)
with open(port_path + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(port_path + ".tmp", port_path)
srv.serve_forever()
PY

# _sg_need_curl: the gate helpers talk HTTP with curl(1).
_sg_need_curl() {
    command -v curl >/dev/null || fail "curl not found (the gate tests need it)"
}

# start_sink: starts the sink, waits (<= 10 s) until it listens (a running
# one is stopped first).
start_sink() {
    local i
    _sg_need_curl
    [ -z "${SINK_PID:-}" ] || { kill "$SINK_PID" 2>/dev/null; wait "$SINK_PID" 2>/dev/null || true; }
    : >"$SINK_LOG"
    rm -f "$SINK_CTL" "$TMP/sink.port"
    "$PY" "$TMP/sink.py" "$SINK_LOG" "$SINK_CTL" "$TMP/sink.port" </dev/null \
        >"$TMP/sink.out" 2>&1 &
    SINK_PID=$!
    bg_track "$SINK_PID"
    _sg_watchdog $$ "$SINK_PID" </dev/null >/dev/null 2>&1 &
    bg_track "$!"
    for i in $(seq 1 100); do
        [ -s "$TMP/sink.port" ] && break
        kill -0 "$SINK_PID" 2>/dev/null || break
        sleep 0.1
    done
    [ -s "$TMP/sink.port" ] || { cat "$TMP/sink.out" >&2; fail "the sink did not start"; }
    SINK_PORT=$(cat "$TMP/sink.port")
    SINK_URL=http${SINK_TLS:+s}://127.0.0.1:$SINK_PORT
    echo "# sink pid $SINK_PID on $SINK_URL"
}

# sink_set STATUS [DELAY_MS [RETRY_AFTER]]
sink_set() {
    echo "$1 ${2:-0} ${3:-}" >"$SINK_CTL.tmp"
    mv -f "$SINK_CTL.tmp" "$SINK_CTL"
}

# sink_py 'code' [args...]: recs, ok, by_id as above; sys.argv[1:] = args.
sink_py() {
    "$PY" -c "
import json, sys
recs = []
with open('$SINK_LOG') as f:
    for line in f:
        if line.endswith('\n'):
            recs.append(json.loads(line))
ok = [r for r in recs if 200 <= r['status'] < 300]
by_id = {}
for r in ok:
    by_id.setdefault(r['event_id'], []).append(r)
$1
" "${@:2}"
}

# sink_count: requests the sink answered 2xx so far.
sink_count() {
    sink_py 'print(len(ok))'
}

# _sg_free_port: a port of 127.0.0.1 nothing listens on (racy, so callers
# retry when the bind fails).
_sg_free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 20001))
        _port_in_use "$port" || break
    done
    echo "$port"
}

# wait_for SECONDS MSG CMD...: runs CMD until it succeeds, at most SECONDS.
wait_for() {
    local secs=$1 msg=$2 deadline
    shift 2
    deadline=$(($(date +%s%N) / 1000000 + secs * 1000))
    until "$@" >/dev/null 2>&1; do
        if [ $(($(date +%s%N) / 1000000)) -ge "$deadline" ]; then
            fail "$msg: not within $secs s"
        fi
        sleep 0.1
    done
}

# _sg_launch_gate: starts `stormguard run` with GATE_ARGS on GATE_PORT and
# ADMIN_PORT; 0 once /healthz answers, 1 if it exited (GATE_RC, GATE_LOG).
_sg_launch_gate() {
    local a prev= have_db=0 have_down=0 have_rt=0 have_listen=0 have_admin=0 have_redis=0 have_storm=0 i
    local listen=127.0.0.1:$GATE_PORT admin=127.0.0.1:$ADMIN_PORT
    for a in "${GATE_ARGS[@]}"; do
        case "$prev" in
        --listen) listen=$a ;;
        --admin) admin=$a ;;
        esac
        case "$a" in
        --db | --db=* | --store | --store=*) have_db=1 ;;
        --downstream | --downstream=*) have_down=1 ;;
        --read-timeout | --read-timeout=*) have_rt=1 ;;
        --listen) have_listen=1 ;;
        --listen=*) have_listen=1; listen=${a#--listen=} ;;
        --admin) have_admin=1 ;;
        --admin=*) have_admin=1; admin=${a#--admin=} ;;
        --redis | --redis=* | --watch | --watch=*) have_redis=1 ;;
        --storm-* | --on-storm*) have_storm=1 ;;
        esac
        prev=$a
    done
    local defaults=()
    [ $have_db = 1 ] || mapfile -t defaults < <(store_flags)
    [ $have_down = 1 ] || defaults+=(--downstream "$SINK_URL")
    [ $have_rt = 1 ] || defaults+=(--read-timeout 2s)
    [ $have_listen = 1 ] || defaults+=(--listen "127.0.0.1:$GATE_PORT")
    [ $have_admin = 1 ] || defaults+=(--admin "127.0.0.1:$ADMIN_PORT")
    # a gate test watches Redis only when it says which (--redis URL)
    [ $have_redis = 1 ] || defaults+=(--watch off)
    # nor does it meet the storm detector unless it sets a --storm-* flag:
    # tests of other features post several builds of one job in a second
    [ $have_storm = 1 ] || defaults+=(--storm-same-job 0 --storm-first-seen 0 --storm-first-seen-tags 0
        --storm-replay-share 0 --storm-rate-factor 0)
    _SG_GATE_N=$((_SG_GATE_N + 1))
    GATE_LOG=$TMP/gate-$_SG_GATE_N.log
    GATE_RC=
    "$SG_BIN" run "${defaults[@]}" "${GATE_ARGS[@]}" </dev/null >"$GATE_LOG.out" 2>"$GATE_LOG" &
    GATE_PID=$!
    bg_track "$GATE_PID"
    _sg_watchdog $$ "$GATE_PID" </dev/null >/dev/null 2>&1 &
    bg_track "$!"
    # a wildcard address is reached on loopback
    GATE_URL=http://${listen/#0.0.0.0:/127.0.0.1:}
    ADMIN=${admin/#0.0.0.0:/127.0.0.1:}
    for i in $(seq 1 150); do
        if ! kill -0 "$GATE_PID" 2>/dev/null; then
            GATE_RC=0
            wait "$GATE_PID" || GATE_RC=$?
            return 1
        fi
        if curl -s -o /dev/null --max-time 2 "http://$ADMIN/healthz"; then
            echo "# stormguard run pid $GATE_PID on $GATE_URL (admin $ADMIN), log $GATE_LOG"
            return 0
        fi
        sleep 0.1
    done
    kill -9 "$GATE_PID" 2>/dev/null || true
    cat "$GATE_LOG" >&2
    fail "stormguard run did not answer /healthz within 15 s"
}

# start_gate [args...]: see above; retries other ports if the bind fails.
start_gate() {
    local attempt
    _sg_need_curl
    GATE_ARGS=("$@")
    for attempt in $(seq 1 10); do
        GATE_PORT=$(_sg_free_port)
        ADMIN_PORT=$(_sg_free_port)
        [ "$GATE_PORT" != "$ADMIN_PORT" ] || continue
        # a test that must know the ports before the gate starts defines
        # gate_ports_chosen, which gets them on every attempt
        if declare -F gate_ports_chosen >/dev/null; then
            gate_ports_chosen "$GATE_PORT" "$ADMIN_PORT"
        fi
        _sg_launch_gate && return 0
        grep -qi "address already in use" "$GATE_LOG" && continue
        cat "$GATE_LOG" >&2
        fail "stormguard run $* exited with $GATE_RC at startup"
    done
    fail "no free ports for stormguard run after 10 attempts"
}

# Several gates at once (replicas on one PostgreSQL store): replica_save N
# keeps the last started gate's pid, URLs and log as replica N; replica_use
# N makes replica N the one the helpers above (gate_post, gate_status,
# stop_gate, kill_gate...) act on.
replica_save() {
    R_PID[$1]=$GATE_PID R_URL[$1]=$GATE_URL R_ADMIN[$1]=$ADMIN R_LOG[$1]=$GATE_LOG
}
replica_use() {
    GATE_PID=${R_PID[$1]} GATE_URL=${R_URL[$1]} ADMIN=${R_ADMIN[$1]} GATE_LOG=${R_LOG[$1]}
}

# restart_gate: same ports and arguments as the last start_gate.
restart_gate() {
    _sg_launch_gate && return 0
    cat "$GATE_LOG" >&2
    fail "stormguard run ${GATE_ARGS[*]} exited with $GATE_RC at restart"
}

# stop_gate [SIGNAL]: sends SIGNAL (default TERM), waits <= 15 s, sets GATE_RC.
stop_gate() {
    local sig=${1:-TERM} i
    kill -"$sig" "$GATE_PID" 2>/dev/null || true
    for i in $(seq 1 150); do
        kill -0 "$GATE_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$GATE_PID" 2>/dev/null; then
        kill -9 "$GATE_PID" 2>/dev/null || true
        wait "$GATE_PID" 2>/dev/null || true
        tail -n 30 "$GATE_LOG" >&2
        fail "stormguard run did not stop within 15 s of SIG$sig"
    fi
    GATE_RC=0
    wait "$GATE_PID" || GATE_RC=$?
}

# kill_gate: SIGKILL, waited for.
kill_gate() {
    kill -9 "$GATE_PID" 2>/dev/null || true
    wait "$GATE_PID" 2>/dev/null || true
}

# _sg_curl URL [curl args...]: sets HTTP_STATUS, REPLY, REPLY_HEADERS.
_sg_curl() {
    local url=$1
    shift
    HTTP_STATUS=$(curl -s -o "$TMP/.curl.body" -D "$TMP/.curl.headers" -w '%{http_code}' \
        --max-time 15 "$@" "$url" || true)
    [ -n "$HTTP_STATUS" ] || HTTP_STATUS=000
    REPLY=$(cat "$TMP/.curl.body" 2>/dev/null || true)
    REPLY_HEADERS=$(tr -d '\r' <"$TMP/.curl.headers" 2>/dev/null || true)
    rm -f "$TMP/.curl.body" "$TMP/.curl.headers"
}

# gate_post PATH BODY [curl args...]
gate_post() {
    local path=$1 body=$2
    shift 2
    printf '%s' "$body" >"$TMP/.post.body"
    _sg_curl "$GATE_URL$path" -X POST -H 'Content-Type: application/json' \
        --data-binary "@$TMP/.post.body" "$@"
}

# admin_get PATH [curl args...]
admin_get() {
    local path=$1
    shift
    if [ -n "$ADMIN_TOKEN" ]; then
        _sg_curl "http://$ADMIN$path" -H "Authorization: Bearer $ADMIN_TOKEN" "$@"
    else
        _sg_curl "http://$ADMIN$path" "$@"
    fi
}

# admin_send METHOD PATH JSON: a JSON request to the admin API.
admin_send() {
    local method=$1 path=$2 body=$3
    printf '%s' "$body" >"$TMP/.admin.body"
    if [ -n "$ADMIN_TOKEN" ]; then
        _sg_curl "http://$ADMIN$path" -X "$method" -H "Authorization: Bearer $ADMIN_TOKEN" \
            -H 'Content-Type: application/json' --data-binary "@$TMP/.admin.body"
    else
        _sg_curl "http://$ADMIN$path" -X "$method" -H 'Content-Type: application/json' \
            --data-binary "@$TMP/.admin.body"
    fi
}

# gate_status: prints the /v1/status document.
gate_status() {
    if [ -n "$ADMIN_TOKEN" ]; then
        curl -sf --max-time 10 -H "Authorization: Bearer $ADMIN_TOKEN" "http://$ADMIN/v1/status"
    else
        curl -sf --max-time 10 "http://$ADMIN/v1/status"
    fi
}

# igor_event JOB NUMBER TIMESTAMP [MASTER] [CI_TYPE]: an Igor build event;
# NUMBER is raw JSON, TIMESTAMP a string (as Igor sends it).
igor_event() {
    local type=
    [ -z "${5:-}" ] || type=",\"type\":\"$5\""
    printf '{"details":{"type":"build","source":"igor","created":"1427237764257"},"content":{"master":"%s"%s,"project":{"name":"%s","lastBuild":{"number":%s,"result":"SUCCESS","building":false,"timestamp":"%s","duration":93000,"url":"https://jenkins/job/%s/%s/"}}}}' \
        "${4:-jenkins-prod}" "$type" "$1" "$2" "$3" "$1" "${2//\"/}"
}

# the e2e_*_pg variants: the store on a PostgreSQL of the test's own
if [ "${SG_STORE_BACKEND:-}" = pg ]; then
    start_postgres
fi
