#!/usr/bin/env bash
# Snapshot and restore throughput against the references named in issue 2,
# side by side on one redis-server in one run:
#   stormguard snapshot   vs  redis-cli --rdb   (full dump of the same keys)
#   stormguard restore    vs  redis-cli --pipe  (the equivalent SET commands)
# plus the snapshot's peak RSS. Keys: N (default 1,000,000) 100-byte strings
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
scripts/setup.sh --bench
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DSG_TESTS=OFF >/dev/null
cmake --build build-bench -j"$(nproc)" >/dev/null
sg=$PWD/build-bench/stormguard

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

# time_cmd OUTVAR CMD...: wall seconds of CMD; also sets PEAK_KB (max RSS).
time_cmd() {
  local var=$1
  shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/out" 2>"$work/err" ||
    { cat "$work/err" >&2; exit 1; }
  read -r secs PEAK_KB <"$work/time"
  printf -v "$var" '%s' "$secs"
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

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

rdb=() snap=() rss=() pipe=() rest=()
for r in $(seq 1 "$REPS"); do
  time_cmd t redis-cli -p "$port" --rdb "$work/dump.rdb"
  rdb+=("$t")
  rm -f "$work"/sg.db*
  time_cmd t "$sg" snapshot --redis "redis://127.0.0.1:$port" --db "$work/sg.db"
  snap+=("$t")
  rss+=("$PEAK_KB")
  grep -q "$N keys" "$work/out" || { echo "snapshot did not take $N keys:" >&2; cat "$work/out" >&2; exit 1; }

  rcli flushall >/dev/null
  time_cmd t sh -c "redis-cli -p $port --pipe <'$work/sets.resp'"
  pipe+=("$t")
  rcli flushall >/dev/null
  time_cmd t "$sg" restore --redis "redis://127.0.0.1:$port" --db "$work/sg.db"
  rest+=("$t")
  [[ $(rcli dbsize) == "$N" ]] || { echo "restore did not restore $N keys" >&2; exit 1; }
done

t_rdb=$(median "${rdb[@]}") t_snap=$(median "${snap[@]}") t_pipe=$(median "${pipe[@]}")
t_rest=$(median "${rest[@]}") peak=$(median "${rss[@]}")
printf '\n%-34s %10s %10s %8s %8s\n' "$N keys, median of $REPS" "reference" "stormguard" "ratio" "target"
printf '%-34s %9ss %9ss %7.2fx %8s\n' "snapshot vs redis-cli --rdb" "$t_rdb" "$t_snap" \
  "$(awk "BEGIN{print $t_snap / $t_rdb}")" "<= 2.0x"
printf '%-34s %9ss %9ss %7.2fx %8s\n' "restore vs redis-cli --pipe SET" "$t_pipe" "$t_rest" \
  "$(awk "BEGIN{print $t_rest / $t_pipe}")" "<= 2.0x"
printf '%-34s %21s %8s %8s\n' "snapshot peak RSS" "$((peak / 1024)) MiB" "" "< 64 MiB"
echo "all runs: rdb ${rdb[*]} | snapshot ${snap[*]} | pipe ${pipe[*]} | restore ${rest[*]}"
