# Shared helpers of the end-to-end tests (tests/e2e/test_*.sh).
#
# Sourced by every test. Each test gets its own temp dir ($TMP) and starts its
# own redis-server(s) on free 127.0.0.1 ports; an EXIT trap stops every server
# and background process the test started and removes $TMP on any exit
# (success, failure, or a signal); a watchdog per server does the same if the
# test's shell is killed outright (SIGKILL, a ctest timeout).
#
# Environment (set by tests/CMakeLists.txt):
#   SG_BIN       path of the built stormguard binary
#   SG_TESTS     path of the tests directory
#   SG_KEEP_TMP  set to keep $TMP after the test (debugging)
#
# Variables: TMP, SG_DB (the store, $TMP/sg.db), PORT (current server),
# SG_URL (when set, sg's default --redis), RCLI_AUTH (password for rcli/rpy),
# PY (python3 interpreter), SEED_POSTED_PER_JOB.
#
# Helpers:
#   start_redis [args...]   start a redis-server, sets PORT (and REDIS_PID)
#   stop_redis [port]       stop one (default: the current $PORT)
#   rcli ...                redis-cli -p $PORT (uses $RCLI_AUTH as password)
#   rpy 'python code' [args] python with c (a tiny RESP client on $PORT),
#                           r = c.call, content(key) = (type, value)
#   pipe_py 'python expr'   send an iterable of commands (lists of bytes/str/
#                           int) through redis-cli --pipe; fails on errors
#   seed_igor N [master] [prefix]  N Igor Jenkins jobs (cursor + markers)
#   sg CMD ...              $SG_BIN CMD --db $SG_DB --redis $SG_URL ... (each
#                           default only if the arguments do not give it)
#   sgx ...                 $SG_BIN with no defaults
#   run CMD ...             run without failing; sets RC, OUT, ERR
#   ok msg / fail msg / finish
#   assert_eq expected actual msg, assert_ne, assert_le a b msg,
#   assert_contains haystack needle msg, assert_not_contains,
#   assert_rc expected msg  (checks $RC of the last `run`, shows its output)
#   json_get json expr      evaluate a python expression on d = json.loads(json)
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
PASSED=0
_SG_PIDS=()     # redis-server pids
_SG_PORTS=()    # their ports, same order
_SG_BG=()       # other background processes

_sg_cleanup() {
    local rc=$?
    trap - ERR
    set +e
    local pid
    for pid in "${_SG_BG[@]}" "${_SG_PIDS[@]}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null
    done
    # bounded wait (2 s), then SIGKILL whatever is left
    local i
    for i in $(seq 1 20); do
        local alive=0
        for pid in "${_SG_BG[@]}" "${_SG_PIDS[@]}"; do
            [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && alive=1
        done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for pid in "${_SG_BG[@]}" "${_SG_PIDS[@]}"; do
        [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
    done
    wait 2>/dev/null
    if [ -n "${SG_KEEP_TMP:-}" ]; then
        echo "keeping $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    if [ $rc -ne 0 ]; then
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
        redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize no --dir "$dir" --logfile "$dir/redis.log" "$@" \
            </dev/null >/dev/null 2>&1 &
        pid=$!
        _SG_PIDS+=("$pid")
        _SG_PORTS+=("$port")
        up=0
        for i in $(seq 1 50); do
            if ! kill -0 "$pid" 2>/dev/null; then
                break # exited: port taken meanwhile, or bad arguments
            fi
            case "$(redis-cli -p "$port" ping 2>&1 || true)" in
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

bg_track() {
    _SG_BG+=("$1")
}

# rcli ...: redis-cli against $PORT; RCLI_AUTH is the password if set.
rcli() {
    if [ -n "$RCLI_AUTH" ]; then
        redis-cli -p "$PORT" --no-auth-warning -a "$RCLI_AUTH" "$@"
    else
        redis-cli -p "$PORT" "$@"
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

# ---- stormguard -------------------------------------------------------------

# sg CMD [args...]: the binary with --db $SG_DB and --redis $SG_URL (default
# redis://127.0.0.1:$PORT) unless the arguments name their own.
sg() {
    if [ $# -eq 0 ] || [ "${1#-}" != "$1" ]; then
        "$SG_BIN" "$@"
        return
    fi
    local cmd=$1 a have_db=0 have_redis=0
    shift
    for a in "$@"; do
        case "$a" in
        --db | --db=*) have_db=1 ;;
        --redis | --redis=*) have_redis=1 ;;
        esac
    done
    local defaults=()
    [ $have_db = 1 ] || defaults+=(--db "$SG_DB")
    [ $have_redis = 1 ] || defaults+=(--redis "${SG_URL:-redis://127.0.0.1:$PORT}")
    "$SG_BIN" "$cmd" "${defaults[@]}" "$@"
}

sgx() {
    "$SG_BIN" "$@"
}
