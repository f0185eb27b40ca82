# Starting private redis-servers on free loopback ports, for the demo, the
# tests and the benchmarks. Source this file; it defines:
#   sg_free_port                      prints a free 127.0.0.1 TCP port
#   sg_start_redis DIR [ARGS...]      starts redis-server in the background on
#                                     a free port, data in DIR; sets
#                                     SG_REDIS_PORT and SG_REDIS_PID
#   sg_stop_redis [PID]               stops it (default: SG_REDIS_PID)
# Callers own cleanup: trap 'sg_stop_redis' EXIT.

sg_free_port() {
  python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

sg_start_redis() {
  local dir=$1
  shift
  local attempt port pid
  for attempt in 1 2 3 4 5; do
    port=$(sg_free_port)
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
      --daemonize no --dir "$dir" --logfile "$dir/redis-$port.log" "$@" &
    pid=$!
    for _ in $(seq 1 100); do
      if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
        SG_REDIS_PORT=$port
        SG_REDIS_PID=$pid
        return 0
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  echo "could not start redis-server (see $dir/redis-*.log)" >&2
  return 1
}

sg_stop_redis() {
  local pid=${1:-${SG_REDIS_PID:-}}
  [[ -n "$pid" ]] || return 0
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
