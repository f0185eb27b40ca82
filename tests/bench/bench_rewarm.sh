#!/usr/bin/env bash
# Rewarm after a wipe: how long the daemon's rewarm job (sg_sidecar_rewarm,
# driven by tests/bench/bench_rewarm.c) takes to put N Igor Jenkins jobs back
# (a cursor hash and a posted-marker hash of 3 builds per job, as seed_igor in
# tests/lib.sh), next to the reference: redis-cli --pipe of the same keys as
# HSET commands into an empty server. Also shown: the CLI path
# (stormguard restore latest --match 'igor:*'). Target: 10,000 jobs in <= 1 s.
#
# Per size and repetition: FLUSHALL, seed with redis-cli --pipe (timed: the
# reference), snapshot with the daemon's snapshot job, FLUSHALL, rewarm
# (timed), FLUSHALL, CLI restore (timed). Each figure is the median of REPS.
#
# usage: tests/bench/bench_rewarm.sh [REPS] [JOBS...]   (default 3 10000 100000)
#   SG_BUILD  build directory (default build-bench), configured Release
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=${1:-3}
shift || true
SIZES=("$@")
((${#SIZES[@]})) || SIZES=(10000 100000)
BUILD=${SG_BUILD:-build-bench}
scripts/setup.sh
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSG_TESTS=ON >/dev/null
cmake --build "$BUILD" -j2 --target stormguard bench_rewarm >/dev/null
BUILD=$(cd "$BUILD" && pwd)
sg=$BUILD/stormguard
driver=$BUILD/tests/bench_rewarm

source scripts/redis-helpers.sh
work=$(mktemp -d)
trap 'sg_stop_redis; rm -rf "$work"' EXIT
sg_start_redis "$work"
port=$SG_REDIS_PORT
url=redis://127.0.0.1:$port
rcli() { redis-cli -p "$port" "$@"; }

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.3f", b - a}'; }
source tests/bench/lib.sh
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

# seed_file N: the HSET commands of N Igor jobs, as RESP, in $work/seed-N.resp
seed_file() { python3 tests/bench/igor_seed.py "$1" >"$work/seed-$1.resp"; }

expect_keys() {
  local got
  got=$(rcli dbsize)
  [[ $got == "$1" ]] || { echo "$2: expected $1 keys, found $got" >&2; exit 1; }
}

declare -A R_PIPE R_WARM R_WALL R_CLI R_SNAP
for jobs in "${SIZES[@]}"; do
  keys=$((2 * jobs))
  echo "generating $jobs Igor jobs ($keys keys)..."
  seed_file "$jobs"
  pipe=() warm=() wall=() cli=() snap=()
  for r in $(seq 1 "$REPS"); do
    rcli flushall >/dev/null
    t0=$(now)
    out=$(redis-cli -p "$port" --pipe <"$work/seed-$jobs.resp")
    pipe+=("$(since "$t0")")
    grep -q "errors: 0," <<<"$out" || { echo "seeding failed: $out" >&2; exit 1; }
    expect_keys "$keys" "seed"

    rm -f "$work"/sg.db*
    out=$("$driver" snapshot "$url" "$work/sg.db")
    [[ $(field keys "$out") == "$keys" ]] || { echo "snapshot: $out" >&2; exit 1; }
    snap+=("$(field seconds "$out")")

    rcli flushall >/dev/null
    t0=$(now)
    out=$("$driver" rewarm "$url" "$work/sg.db")
    wall+=("$(since "$t0")")
    [[ $(field restored "$out") == "$keys" ]] || { echo "rewarm: $out" >&2; exit 1; }
    warm+=("$(field seconds "$out")")
    expect_keys "$keys" "rewarm"

    rcli flushall >/dev/null
    t0=$(now)
    "$sg" restore latest --match 'igor:*' --redis "$url" --db "$work/sg.db" >/dev/null
    cli+=("$(since "$t0")")
    expect_keys "$keys" "restore"
  done
  R_PIPE[$jobs]=$(median "${pipe[@]}") R_WARM[$jobs]=$(median "${warm[@]}")
  R_WALL[$jobs]=$(median "${wall[@]}") R_CLI[$jobs]=$(median "${cli[@]}")
  R_SNAP[$jobs]=$(median "${snap[@]}")
  echo "  runs: pipe ${pipe[*]} | rewarm job ${warm[*]} | rewarm process ${wall[*]} |" \
    "cli restore ${cli[*]} | snapshot job ${snap[*]}"
done

printf '\nmedian of %s; seconds\n' "$REPS"
printf '%8s %8s %12s %12s %7s %12s %12s %12s %8s\n' jobs keys "pipe HSET" "rewarm job" ratio \
  "rewarm proc" "CLI restore" "snapshot job" target
for jobs in "${SIZES[@]}"; do
  target=-
  ((jobs == 10000)) && target="<= 1 s"
  printf '%8s %8s %12s %12s %6.2fx %12s %12s %12s %8s\n' "$jobs" $((2 * jobs)) "${R_PIPE[$jobs]}" \
    "${R_WARM[$jobs]}" "$(awk "BEGIN{print ${R_WARM[$jobs]} / ${R_PIPE[$jobs]}}")" \
    "${R_WALL[$jobs]}" "${R_CLI[$jobs]}" "${R_SNAP[$jobs]}" "$target"
done
echo "(pipe HSET: redis-cli --pipe of the same keys as HSET commands into an empty server;"
echo " rewarm job: sg_sidecar_rewarm's own time, connecting and opening the store included;"
echo " rewarm proc: the driver process end to end; ratio: rewarm job / pipe HSET)"
