# Shared by the benchmark scripts (source it from the repository's root):
#   bench_build [TARGET...]  installs what benchmarks need (scripts/setup.sh
#                            --bench) and builds TARGETs (default: stormguard)
#                            in build-bench; sets sg to the binary
#   time_cmd OUTVAR CMD...   runs CMD with stdout and stderr in $work/out and
#                            $work/err (the caller's temp dir), exits on its
#                            failure; OUTVAR gets its wall seconds, PEAK_KB
#                            its peak RSS
#   median X...              the median of the numbers
#   wrk_run NAME PORT SECONDS CONNS  wrk -t2 with the script $lua against
#                            127.0.0.1:PORT; prints "req/s failed p50 p99
#                            total" (req/s: 2xx answers; failed: non-2xx
#                            replies, socket errors and timeouts, wrk's 2 s,
#                            which p50 and p99 do not count), its output
#                            kept in $work/wrk-NAME.txt
#   wrk_spread NAME SECONDS CONNS PORT...  one wrk per PORT at once, the
#                            CONNS and 2 threads shared out among them, the
#                            i-th (from 0) with SG_PART=i (igor_post.lua:
#                            builds of its own); prints what wrk_run does,
#                            req/s, failed and total summed, p50 and p99 the
#                            worst of theirs; outputs in $work/wrk-NAME.I.txt
#   wrk_cpu NAME             CPU seconds (user + system) the wrk of run NAME
#                            took
# The gate as the gate benchmarks run it (scripts/redis-helpers.sh sourced):
#   gate_start NAME SINK_PORT STORE-FLAGS...  stormguard run in front of
#                            127.0.0.1:SINK_PORT, storm detector and Redis
#                            watch off, waits (<= 10 s) for /healthz; sets
#                            gate (its pid), gate_port and admin_port; log in
#                            $work/gate-NAME.log
#   gate_stop PID...         SIGTERM, waited for (<= 10 s, then SIGKILL)
#   metric_sum ADMIN_PORT METRIC  the sum of METRIC's samples on /metrics
#   rss_samples SECONDS PID...  VmRSS (KiB) of each PID every 5 s, from 0 to
#                            SECONDS: one line per PID, its samples
#   bench_pids               what gate_start started (and the caller adds);
#   bench_forget PID         no longer in it (waited for by the caller)
#   bench_stop_all           stops them all (gate_stop) and the wrk of
#                            wrk_spread still running, for an EXIT trap
#   proc_ticks PID...        CPU ticks (user + system, with reaped children)
#                            of the PIDs and their live children
#   machine_ticks            "busy total" ticks of the whole machine

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

# (of an even count, the mean of the two middle ones)
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {
  if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# wrk_parse FILE: "req/s failed p50 p99 total" of the wrk output in FILE
wrk_parse() {
  local rps non2xx p50 p99 total
  # "Non-2xx or 3xx responses: N", "Socket errors: connect N, read N,
  # write N, timeout N"
  non2xx=$(awk '/Non-2xx/ {n += $5} /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10}
    END {print n + 0}' "$1")
  p50=$(awk '$1 == "50%" {print $2}' "$1")
  p99=$(awk '$1 == "99%" {print $2}' "$1")
  total=$(awk '/requests in/ {print $1}' "$1")
  # the 2xx answers per second: wrk's Requests/sec counts every reply, a
  # 503 too, and a run that failed must not look fast
  rps=$(awk -v e="${non2xx:-0}" -v t="${total:-0}" '/Requests\/sec/ {
    ok = t > 0 ? (t - e) / t : 0; printf "%.2f", $2 * (ok > 0 ? ok : 0) }' "$1")
  echo "$rps ${non2xx:-0} $p50 $p99 $total"
}

# latency_ms LATENCY: wrk's "850.00us", "3.21ms" or "1.02s" in milliseconds
latency_ms() {
  awk -v l="$1" 'BEGIN {
    v = l + 0; u = l; sub(/^[0-9.]+/, "", u)
    print (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : (u == "m") ? v * 60000 : v }'
}

wrk_run() { wrk_spread "$1" "$3" "$4" "$2"; }

wrk_spread() {
  local name=$1 secs=$2 conns=$3
  shift 3
  local n=$# threads=$((2 / $# > 0 ? 2 / $# : 1)) i=0 port base
  local -a pids=()
  for port in "$@"; do
    base=$work/wrk-$name
    ((n == 1)) || base=$base.$i
    # wrk's own pid in $base.pid, for bench_stop_all (time would not pass
    # a SIGTERM on)
    SG_PART=$i /usr/bin/time -f '%U %S' -o "$base.cpu" \
      sh -c 'echo $$ >"$0.pid"; exec "$@"' "$base" wrk -t"$threads" -c"$((conns / n))" -d"$secs"s --latency -s "$lua" \
      "http://127.0.0.1:$port/" >"$base.txt" 2>&1 &
    pids+=("$!")
    i=$((i + 1))
  done
  for i in "${pids[@]}"; do wait "$i" || true; done
  local f rps non2xx p50 p99 total
  local s_rps=0 s_err=0 s_total=0 w_p50='' w_p99=''
  for f in "$work/wrk-$name.txt" "$work/wrk-$name".[0-9]*.txt; do
    [[ -f $f ]] || continue
    read -r rps non2xx p50 p99 total < <(wrk_parse "$f")
    if [[ -z $rps || -z $p99 ]]; then
      cat "$f" >&2
      return 1
    fi
    s_rps=$(awk "BEGIN {printf \"%.2f\", $s_rps + $rps}") s_err=$((s_err + non2xx))
    s_total=$((s_total + total))
    if [[ -z $w_p99 ]] || (($(awk "BEGIN {print ($(latency_ms "$p99") > $(latency_ms "$w_p99"))}"))); then
      w_p99=$p99
    fi
    if [[ -z $w_p50 ]] || (($(awk "BEGIN {print ($(latency_ms "$p50") > $(latency_ms "$w_p50"))}"))); then
      w_p50=$p50
    fi
  done
  echo "$s_rps $s_err $w_p50 $w_p99 $s_total"
}

wrk_cpu() {
  local f files=()
  for f in "$work/wrk-$1.cpu" "$work/wrk-$1".[0-9]*.cpu; do
    [[ ! -f $f ]] || files+=("$f")
  done
  awk '$1 ~ /^[0-9.]+$/ {s += $1 + $2} END {printf "%.2f\n", s}' "${files[@]}" /dev/null
}

bench_pids=()

gate_start() {
  local name=$1 sink=$2
  shift 2
  gate_port=$(sg_free_port) admin_port=$(sg_free_port)
  # No Redis to watch, and the storm detector stays off: a benchmark
  # posting thousands of first-seen jobs a second is a storm by every
  # signal and would measure the held queue instead of the gate's
  # forwarding path (tests/bench/bench_held_rss.sh measures that one).
  "$sg" run "$@" --downstream "http://127.0.0.1:$sink" \
    --listen "127.0.0.1:$gate_port" --admin "127.0.0.1:$admin_port" --watch off \
    --storm-same-job 0 --storm-first-seen 0 --storm-first-seen-tags 0 --storm-replay-share 0 \
    --storm-rate-factor 0 2>"$work/gate-$name.log" &
  gate=$!
  bench_pids+=("$gate")
  local _
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$admin_port/healthz" >/dev/null && return 0
    kill -0 "$gate" 2>/dev/null || break
    sleep 0.1
  done
  echo "gate $name did not come up:" >&2
  cat "$work/gate-$name.log" >&2
  exit 1
}

gate_stop() {
  local p i
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
  for p in "$@"; do
    for i in $(seq 1 100); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    bench_forget "$p"
  done
}

bench_forget() {
  local i
  for i in "${!bench_pids[@]}"; do
    [[ ${bench_pids[i]} != "$1" ]] || unset 'bench_pids[i]'
  done
}

bench_stop_all() {
  local f p
  for f in "$work"/wrk-*.pid; do
    [[ -f $f ]] || continue
    p=$(cat "$f")
    [[ $(cat "/proc/$p/comm" 2>/dev/null) != wrk ]] || kill "$p" 2>/dev/null || true
  done
  ((${#bench_pids[@]} == 0)) || gate_stop "${bench_pids[@]}"
}

metric_sum() {
  curl -s "http://127.0.0.1:$1/metrics" |
    awk -v m="$2" 'index($1, m) == 1 && (length($1) == length(m) || substr($1, length(m) + 1, 1) == "{") {s += $2} END {print s + 0}'
}

rss_samples() {
  local secs=$1 t p
  shift
  local -a rows
  for t in $(seq 0 5 "$secs"); do
    ((t == 0)) || sleep 5
    for p in $(seq 1 $#); do
      rows[p]+=" $(awk '/VmRSS/ {print $2}' "/proc/${!p}/status")"
    done
  done
  for p in $(seq 1 $#); do echo "${rows[p]# }"; done
}

proc_ticks() {
  local p k ticks=0
  for p in "$@"; do
    for k in "$p" $(cat /proc/"$p"/task/*/children 2>/dev/null); do
      # fields after the command's ")" : utime is the 12th, then stime,
      # cutime, cstime
      ticks=$((ticks + $(sed 's/.*) //' "/proc/$k/stat" 2>/dev/null |
        awk '{print $12 + $13 + $14 + $15; f = 1} END {if (!f) print 0}')))
    done
  done
  echo "$ticks"
}

machine_ticks() {
  awk '/^cpu / {t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t}' /proc/stat
}
