#!/usr/bin/env bash
# TLS against plain on one redis-server in one run: the server listens on a
# plain port and a TLS port (certificates made here by openssl), and the
# same N keys (default 1,000,000 100-byte strings, DEBUG POPULATE) are
#   snapshotted (--method scan, and --method sync) over redis:// and over
#   rediss://, and
#   restored into the emptied server over each.
# Each figure is the median of REPS (default 3); the ratio is TLS / plain
# (the issue's aim: within 1.3x).
#
# usage: tests/bench/bench_tls.sh [N] [REPS]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000000}
REPS=${2:-3}
source tests/bench/lib.sh
bench_build

source scripts/redis-helpers.sh
work=$(mktemp -d)
trap 'sg_stop_redis; rm -rf "$work"' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/ca.key" -out "$work/ca.pem" -days 2 \
  -subj /CN=bench-ca 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$work/server.key" -out "$work/server.csr" \
  -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$work/san.ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
  -CAcreateserial -days 2 -extfile "$work/san.ext" -out "$work/server.pem" 2>/dev/null
tls_port=$(sg_free_port)
sg_start_redis "$work" --enable-debug-command local --repl-diskless-sync-delay 0 \
  --tls-port "$tls_port" --tls-cert-file "$work/server.pem" --tls-key-file "$work/server.key" \
  --tls-ca-cert-file "$work/ca.pem" --tls-auth-clients no --tls-replication yes
port=$SG_REDIS_PORT
rcli() { redis-cli -p "$port" "$@"; }
plain="redis://127.0.0.1:$port"
tls="rediss://localhost:$tls_port"


echo "populating $N keys of 100 bytes..."
rcli flushall >/dev/null
rcli debug populate "$N" key 100 >/dev/null
[[ $(rcli dbsize) == "$N" ]] || { echo "populate failed" >&2; exit 1; }

# snap NAME METHOD URL: one snapshot into a fresh store
snap() {
  rm -f "$work"/sg-"$1".db*
  time_cmd t "$sg" snapshot --method "$2" --redis "$3" --cacert "$work/ca.pem" \
    --db "$work/sg-$1.db"
  grep -q "$N keys" "$work/out" || { echo "snapshot $1 did not take $N keys:" >&2; cat "$work/out" >&2; exit 1; }
  eval "$1+=(\"$t\")"
}
# rest NAME URL: restore the scan snapshot into the emptied server
rest() {
  rcli flushall >/dev/null
  time_cmd t "$sg" restore --redis "$2" --cacert "$work/ca.pem" --db "$work/sg-scan_plain.db"
  [[ $(rcli dbsize) == "$N" ]] || { echo "restore $1 did not restore $N keys" >&2; exit 1; }
  eval "$1+=(\"$t\")"
}

scan_plain=() scan_tls=() sync_plain=() sync_tls=() rest_plain=() rest_tls=()
for r in $(seq 1 "$REPS"); do
  snap scan_plain scan "$plain"
  snap scan_tls scan "$tls"
  snap sync_plain sync "$plain"
  snap sync_tls sync "$tls"
  rest rest_plain "$plain"
  rest rest_tls "$tls"
done

printf '\n%-34s %10s %10s %8s %8s\n' "$N keys, median of $REPS" "plain" "TLS" "ratio" "aim"
row() {
  local p t
  eval 'p=$(median "${'"$2"'[@]}")'
  eval 't=$(median "${'"$3"'[@]}")'
  printf '%-34s %9ss %9ss %7.2fx %8s\n' "$1" "$p" "$t" "$(awk "BEGIN{print $t / $p}")" "<= 1.3x"
}
row "snapshot --method scan" scan_plain scan_tls
row "snapshot --method sync" sync_plain sync_tls
row "restore" rest_plain rest_tls
echo "all runs: scan ${scan_plain[*]} / ${scan_tls[*]} | sync ${sync_plain[*]} / ${sync_tls[*]} |" \
  "restore ${rest_plain[*]} / ${rest_tls[*]}"
