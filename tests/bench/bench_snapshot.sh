#!/usr/bin/env bash
# Snapshot and restore throughput against the references named in issue 2,
# side by side on one redis-server in one run:
#   stormguard snapshot   vs  redis-cli --rdb   (full dump of the same keys),
#                             with each method: scan (SCAN + DUMP, the
#                             default) and sync (the RDB of a SYNC)
#   stormguard restore    vs  redis-cli --pipe  (the equivalent SET commands)
# plus the snapshots' peak RSS, and the server's CPU seconds per snapshot
# (INFO cpu): its main thread's, which every other client waits on, and its
# fork's (--rdb and sync), read once Redis has reaped the child. Keys: N (default 1,000,000) 100-byte strings
# made by DEBUG POPULATE. Each measurement is the median of REPS (default 3).
#
# The server runs with repl-diskless-sync-delay 0: Redis 7 otherwise waits
# 5 s before streaming an RDB to a replica, which would flatter the ratio.
#
# usage: tests/bench/bench_snapshot.sh [N] [REPS]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000000}
REPS=${2:-3}
source tests/bench/lib.sh
bench_build

source scripts/redis-helpers.sh
work=$(mktemp -d)
trap 'sg_stop_redis; rm -rf "$work"' EXIT
sg_start_redis "$work" --enable-debug-command local --repl-diskless-sync-delay 0
port=$SG_REDIS_PORT
rcli() { redis-cli -p "$port" "$@"; }

populate() {
  rcli flushall >/dev/null
  rcli debug populate "$N" key 100 >/dev/null
  [[ $(rcli dbsize) == "$N" ]] || { echo "populate failed" >&2; exit 1; }
}


echo "populating $N keys of 100 bytes..."
populate
# The reference restore input: the same keys and 100-byte values as SETs.
python3 - "$N" >"$work/sets.resp" <<'PY'
import sys
n = int(sys.argv[1])
val = b"v" * 100
out = sys.stdout.buffer
for i in range(n):
    k = b"key:%d" % i
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n" % (len(k), k, val))
PY

# server_cpu: "main fork" CPU seconds so far
server_cpu() {
  sleep 0.3 # serverCron reaps a finished fork, and counts its CPU, within 100 ms
  rcli info cpu | awk -F: '/^used_cpu_(sys|user):/ {m += $2} /^used_cpu_(sys|user)_children:/ {f += $2}
    END {printf "%.2f %.2f", m, f}'
}
# cpu_delta "BEFORE" "AFTER": "main+fork" seconds used in between
cpu_delta() { awk -v a="$1" -v b="$2" 'BEGIN {split(a, x, " "); split(b, y, " ");
  printf "%.2f+%.2f", y[1] - x[1], y[2] - x[2]}'; }
# snap_run METHOD: one snapshot; appends its time, RSS and server CPU
snap_run() {
  local m=$1 c0
  rm -f "$work"/sg.db*
  c0=$(server_cpu)
  time_cmd t "$sg" snapshot --method "$m" --redis "redis://127.0.0.1:$port" --db "$work/sg.db"
  grep -q "$N keys" "$work/out" || { echo "snapshot ($m) did not take $N keys:" >&2; cat "$work/out" >&2; exit 1; }
  eval "snap_$m+=(\"$t\"); rss_$m+=(\"$PEAK_KB\")"
  eval "cpu_$m+=(\"$(cpu_delta "$c0" "$(server_cpu)")\")"
}

rdb=() cpu_rdb=() snap_scan=() rss_scan=() cpu_scan=() snap_sync=() rss_sync=() cpu_sync=()
pipe=() rest=()
for r in $(seq 1 "$REPS"); do
  c0=$(server_cpu)
  time_cmd t redis-cli -p "$port" --rdb "$work/dump.rdb"
  rdb+=("$t")
  cpu_rdb+=("$(cpu_delta "$c0" "$(server_cpu)")")
  snap_run sync
  snap_run scan

  rcli flushall >/dev/null
  time_cmd t sh -c "redis-cli -p $port --pipe <'$work/sets.resp'"
  pipe+=("$t")
  rcli flushall >/dev/null
  time_cmd t "$sg" restore --redis "redis://127.0.0.1:$port" --db "$work/sg.db"
  rest+=("$t")
  [[ $(rcli dbsize) == "$N" ]] || { echo "restore did not restore $N keys" >&2; exit 1; }
done

t_rdb=$(median "${rdb[@]}") t_pipe=$(median "${pipe[@]}") t_rest=$(median "${rest[@]}")
printf '\n%-38s %10s %10s %8s %8s\n' "$N keys, median of $REPS" "reference" "stormguard" "ratio" "target"
for m in sync scan; do
  eval 't=$(median "${snap_'$m'[@]}")'
  printf '%-42s %9ss %9ss %7.2fx %8s\n' "snapshot --method $m vs redis-cli --rdb" "$t_rdb" "$t" \
    "$(awk "BEGIN{print $t / $t_rdb}")" "<= 2.0x"
done
printf '%-42s %9ss %9ss %7.2fx %8s\n' "restore vs redis-cli --pipe SET" "$t_pipe" "$t_rest" \
  "$(awk "BEGIN{print $t_rest / $t_pipe}")" "<= 2.0x"
for m in sync scan; do
  eval 'peak=$(median "${rss_'$m'[@]}")'
  printf '%-42s %21s %8s %8s\n' "snapshot --method $m peak RSS" "$((peak / 1024)) MiB" "" "< 64 MiB"
done
echo "redis CPU s per snapshot, main thread + fork: --rdb ${cpu_rdb[*]} | sync ${cpu_sync[*]} |" \
  "scan ${cpu_scan[*]}"
echo "all runs: rdb ${rdb[*]} | sync ${snap_sync[*]} | scan ${snap_scan[*]} | pipe ${pipe[*]} | restore ${rest[*]}"
