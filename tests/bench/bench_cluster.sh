#!/usr/bin/env bash
# A Redis Cluster of three masters against one server with the same N keys
# (default 1,000,000 100-byte strings), in one run on this machine:
# snapshot (--method scan) wall time of each, the median of REPS (default
# 3), and the ratio cluster / single (the issue's aim: below 1, the masters
# read in parallel). All servers on free 127.0.0.1 ports, stopped at exit.
#
# usage: tests/bench/bench_cluster.sh [N] [REPS]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000000}
REPS=${2:-3}
source tests/bench/lib.sh
bench_build

source scripts/redis-helpers.sh
work=$(mktemp -d)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do sg_stop_redis "$p"; done
  rm -rf "$work"
}
trap cleanup EXIT

sg_start_redis "$work" --enable-debug-command local
single=$SG_REDIS_PORT
pids+=("$SG_REDIS_PID")
nodes=()
for i in 1 2 3; do
  mkdir -p "$work/node$i"
  sg_start_redis "$work/node$i" --cluster-enabled yes --cluster-config-file nodes.conf
  nodes+=("$SG_REDIS_PORT")
  pids+=("$SG_REDIS_PID")
done
redis-cli --cluster create "${nodes[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes \
  >"$work/create.log" 2>&1 || { cat "$work/create.log" >&2; exit 1; }
for _ in $(seq 1 100); do
  ok=1
  for p in "${nodes[@]}"; do
    redis-cli -p "$p" cluster info | grep -q cluster_state:ok || ok=0
  done
  [[ $ok == 1 ]] && break
  sleep 0.1
done

echo "populating $N keys of 100 bytes on one server and on the Cluster..."
redis-cli -p "$single" debug populate "$N" key 100 >/dev/null
# the same keys through redis-cli --pipe, each to its master (slots per key)
python3 - "$N" "${nodes[@]}" <<'PY'
import socket, sys
n = int(sys.argv[1]); ports = [int(p) for p in sys.argv[2:]]
def crc16(b):
    crc = 0
    for c in b:
        crc ^= c << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xffff
    return crc
# who serves which slot: CLUSTER SLOTS, read with a small RESP parser
def parse(buf, i):
    t, j = buf[i:i+1], buf.index(b"\r\n", i)
    head = buf[i+1:j]
    if t == b"*":
        out, i = [], j + 2
        for _ in range(int(head)):
            v, i = parse(buf, i)
            out.append(v)
        return out, i
    if t == b"$":
        n = int(head)
        return buf[j+2:j+2+n], j + 4 + n
    if t == b":":
        return int(head), j + 2
    return head, j + 2
s = socket.create_connection(("127.0.0.1", ports[0]))
s.sendall(b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n")
data = b""
while True:
    data += s.recv(65536)
    try:
        slots, _ = parse(data, 0)
        break
    except (ValueError, IndexError):
        continue
s.close()
owner = [None] * 16384
for r in slots:
    for sl in range(r[0], r[1] + 1):
        owner[sl] = r[2][1]
conns = {p: socket.create_connection(("127.0.0.1", p)) for p in ports}
bufs = {p: [] for p in ports}
counts = {p: 0 for p in ports}
val = b"v" * 100
for k in range(n):
    key = b"key:%d" % k
    p = owner[crc16(key) & 16383]
    bufs[p].append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n" % (len(key), key, val))
    counts[p] += 1
    if len(bufs[p]) == 10000:
        conns[p].sendall(b"".join(bufs[p])); bufs[p] = []
for p in ports:
    if bufs[p]:
        conns[p].sendall(b"".join(bufs[p]))
# read every +OK
for p in ports:
    want = counts[p] * 5
    got = 0
    while got < want:
        got += len(conns[p].recv(1 << 20))
    conns[p].close()
PY
total=0
for p in "${nodes[@]}"; do total=$((total + $(redis-cli -p "$p" dbsize))); done
[[ $total == "$N" ]] || { echo "the Cluster holds $total keys, not $N" >&2; exit 1; }


one=() three=()
for r in $(seq 1 "$REPS"); do
  rm -f "$work"/sg.db*
  time_cmd t "$sg" snapshot --redis "redis://127.0.0.1:$single" --db "$work/sg.db"
  grep -q "$N keys" "$work/out" || { cat "$work/out" >&2; exit 1; }
  one+=("$t")
  rm -f "$work"/sg.db*
  time_cmd t "$sg" snapshot --redis "redis://127.0.0.1:${nodes[0]}" --db "$work/sg.db"
  grep -q "$N keys" "$work/out" || { cat "$work/out" >&2; exit 1; }
  three+=("$t")
done
t1=$(median "${one[@]}") t3=$(median "${three[@]}")
printf '\n%-40s %10s %10s %8s %8s\n' "$N keys, median of $REPS" "1 server" "3 masters" "ratio" "aim"
printf '%-40s %9ss %9ss %7.2fx %8s\n' "snapshot --method scan" "$t1" "$t3" \
  "$(awk "BEGIN{print $t3 / $t1}")" "< 1.0x"
echo "all runs: 1 server ${one[*]} | 3 masters ${three[*]}"
