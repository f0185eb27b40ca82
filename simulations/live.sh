#!/usr/bin/env bash
# simulations/live.sh SCENARIO [--speed N] [--duration D] [--seed N]
#                     [--defence none|stormguard]... [--compare] [--keep]
#
# Runs a storm scenario (simulations/*.json) in compressed real time
# against the real thing, once per defence, and prints the same JSON as
# `stormguard simulate --json` with "live": true and "speed": N. What runs,
# all on 127.0.0.1 on free ports:
#   - a real redis-server (no persistence), holding Igor's real keys
#     (DOMAIN.md section 2);
#   - a Jenkins-and-Igor emulator (simulations/live/live.py) replaying
#     exactly the builds `stormguard simulate SCENARIO --world FILE` draws,
#     polling as the simulator's Igor model does and posting Igor's real
#     payloads (section 3); it applies the scenario's faults to the server;
#   - an Echo stand-in (live/echo.py) counting triggers with the
#     simulator's metrics;
#   - for the stormguard defence, the real `stormguard run --profile igor`
#     (watch, periodic snapshot, rewarm, gate) between the two, its time
#     settings divided by the speed (listed under "scaled" in the output),
#     and the operator's `stormguard release --all --newest-only` (or
#     `drop --all`) reacts_after the first held event, through the CLI.
#     The none defence posts straight to the Echo stand-in.
# --speed N (a whole number, default 60): N simulated seconds a second, so
# the seed scenario (3 h) takes about 3 minutes per defence. Above 60 the
# daemon's settings given in whole seconds are rounded (marked "exact":
# false). --duration D cuts the scenario short (faults and changes after
# the cut left out; the output says so). --compare also runs the virtual
# simulation of the same scenario and seed and adds "virtual" and
# "agreement" (spurious, genuine_lost, held_at_end per defence). --keep
# keeps the work directory (logs of the gate and the servers) and prints
# its path. Faults: flushall, flushdb, restart and delete_pattern run live;
# evict, failover_empty and park are refused (exit 2, with the reason), as
# are Docker accounts. The binary is $SG_BIN, else build-asan/stormguard.
# Progress goes to stderr, the JSON to stdout. Every process started is
# stopped by pid on any exit; a run is bounded (3x its planned wall time
# plus 2 minutes).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
SG_BIN=${SG_BIN:-$root/build-asan/stormguard}

usage() {
    echo "usage: simulations/live.sh SCENARIO [--speed N] [--duration D] [--seed N]" >&2
    echo "                           [--defence none|stormguard]... [--compare] [--keep]" >&2
    exit 2
}

scenario= speed=60 duration= seed= compare=0 keep=0
defences=()
while [ $# -gt 0 ]; do
    case "$1" in
    --speed) [ $# -ge 2 ] || usage; speed=$2; shift 2 ;;
    --speed=*) speed=${1#--speed=}; shift ;;
    --duration) [ $# -ge 2 ] || usage; duration=$2; shift 2 ;;
    --duration=*) duration=${1#--duration=}; shift ;;
    --seed) [ $# -ge 2 ] || usage; seed=$2; shift 2 ;;
    --seed=*) seed=${1#--seed=}; shift ;;
    --defence) [ $# -ge 2 ] || usage; defences+=("$2"); shift 2 ;;
    --defence=*) defences+=("${1#--defence=}"); shift ;;
    --compare) compare=1; shift ;;
    --keep) keep=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "live.sh: unknown option $1" >&2; usage ;;
    *) [ -z "$scenario" ] || usage; scenario=$1; shift ;;
    esac
done
[ -n "$scenario" ] || usage
[ -r "$scenario" ] || { echo "live.sh: cannot read $scenario" >&2; exit 2; }
case "$speed" in '' | *[!0-9]* | 0) echo "live.sh: --speed must be a whole number from 1" >&2; exit 2 ;; esac
case "$seed" in *[!0-9]*) echo "live.sh: --seed must be a whole number" >&2; exit 2 ;; esac
[ ${#defences[@]} -gt 0 ] || defences=(none stormguard)
for d in "${defences[@]}"; do
    case "$d" in none | stormguard) ;; *)
        echo "live.sh: --defence $d: only none and stormguard run live (the others are models of Igor's settings and nginx: stormguard simulate)" >&2
        exit 2 ;;
    esac
done
[ -x "$SG_BIN" ] || { echo "live.sh: $SG_BIN is not executable (build it, or set SG_BIN)" >&2; exit 2; }
for tool in redis-server python3; do
    command -v $tool >/dev/null || { echo "live.sh: $tool not found" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/stormguard-live.XXXXXX")
pids=$work/pids
: >"$pids"
child=

cleanup() {
    local rc=$? pid i alive
    trap - EXIT INT TERM HUP
    set +e
    [ -n "$child" ] && kill "$child" 2>/dev/null
    while read -r pid; do kill "$pid" 2>/dev/null; done <"$pids"
    for i in $(seq 1 50); do
        alive=0
        for pid in $child $(cat "$pids"); do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for pid in $child $(cat "$pids"); do kill -9 "$pid" 2>/dev/null; done
    wait 2>/dev/null
    if [ $keep = 1 ]; then
        echo "live.sh: kept $work" >&2
    else
        rm -rf "$work"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# py ARGS...: live.py in the background, waited for, so that a signal
# reaches the trap at once; its pid is stopped on exit like the others
py() {
    local out=$1 rc=0
    shift
    python3 "$here/live/live.py" "$@" >"$out" &
    child=$!
    wait "$child" || rc=$?
    child=
    return $rc
}

py "$work/check.out" check "$scenario" || exit $?

seed_args=()
[ -z "$seed" ] || seed_args=(--seed "$seed")
cut_from=()
if [ -n "$duration" ]; then
    if py "$work/cut.out" cut "$scenario" "$duration" "$work/scenario.json"; then
        cut_from=(--cut-from "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["duration"])' "$scenario")")
        echo "live.sh: cut short to $duration (from ${cut_from[1]}): $work/scenario.json" >&2
        scenario=$work/scenario.json
    else
        echo "live.sh: --duration $duration is not shorter than the scenario: the whole of it runs" >&2
    fi
fi

"$SG_BIN" simulate "$scenario" --world "$work/world.json" "${seed_args[@]}"
seed=${seed:-$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("seed", 1))' "$scenario")}

rows=()
for d in "${defences[@]}"; do
    echo "live.sh: $d, --speed $speed" >&2
    mkdir -p "$work/$d"
    py "$work/row-$d.json" run --defence "$d" --scenario "$scenario" --world "$work/world.json" \
        --speed "$speed" --workdir "$work/$d" --pidfile "$pids" --sg-bin "$SG_BIN"
    rows+=("$work/row-$d.json")
done

virtual=()
if [ $compare = 1 ]; then
    echo "live.sh: the virtual run of the same scenario" >&2
    vdef=()
    for d in "${defences[@]}"; do vdef+=(--defence "$d"); done
    "$SG_BIN" simulate "$scenario" --json "${vdef[@]}" "${seed_args[@]}" >"$work/virtual.json"
    virtual=(--virtual "$work/virtual.json")
fi

py "$work/merged.json" merge --scenario "$scenario" --seed "$seed" --speed "$speed" \
    "${cut_from[@]}" "${virtual[@]}" "${rows[@]}"
cat "$work/merged.json"
