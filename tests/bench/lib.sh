# Shared by the benchmark scripts (source it from the repository's root):
#   bench_build [TARGET...]  installs what benchmarks need (scripts/setup.sh
#                            --bench) and builds TARGETs (default: stormguard)
#                            in build-bench; sets sg to the binary
#   time_cmd OUTVAR CMD...   runs CMD with stdout and stderr in $work/out and
#                            $work/err (the caller's temp dir), exits on its
#                            failure; OUTVAR gets its wall seconds, PEAK_KB
#                            its peak RSS
#   median X...              the median of the numbers
#   wrk_run NAME PORT SECONDS CONNS  wrk with the script $lua against
#                            127.0.0.1:PORT; prints "req/s non2xx p50 p99
#                            total", its output kept in $work/wrk-NAME.txt

bench_build() {
  scripts/setup.sh --bench
  # one configuration for every benchmark sharing build-bench (SG_TESTS=ON
  # builds the drivers the others need): switching it would rebuild the tree
  cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DSG_TESTS=ON >/dev/null
  cmake --build build-bench -j"$(nproc)" --target "${@:-stormguard}" >/dev/null
  sg=$PWD/build-bench/stormguard
}

time_cmd() {
  local var=$1
  shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/out" 2>"$work/err" ||
    { cat "$work/err" >&2; exit 1; }
  local secs
  read -r secs PEAK_KB <"$work/time"
  printf -v "$var" '%s' "$secs"
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

wrk_run() {
  local out
  out=$(wrk -t2 -c"$4" -d"$3"s --latency -s "$lua" "http://127.0.0.1:$2/" 2>&1)
  echo "$out" >"$work/wrk-$1.txt"
  local rps non2xx p50 p99 total
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  total=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "$rps ${non2xx:-0} $p50 $p99 $total"
}
