#!/usr/bin/env bash
# The simulator's speed against the targets named in the Simulate issue, on
# this machine, in one run (Release build):
#   (1) the seed scenario (simulations/spinnaker-flushall.json), every
#       defence: wall time against 10 s, and each defence alone;
#   (2) scale: SG_JOBS jobs (default 100,000) over SG_MASTERS masters
#       (default 10), SG_HISTORY builds of history each (default 10), one
#       FLUSHALL an hour in, SG_DURATION long (default 4h), Igor posting in
#       20 ms: the none and stormguard defences, wall time against 5 minutes
#       and peak RSS (VmHWM, /usr/bin/time) against 1 GiB.
# Each run is bounded by SG_DEADLINE seconds (default 1200); a run past it
# is killed and reported as such.
#
# usage: tests/bench/bench_simulate.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/bench/lib.sh
bench_build
JOBS=${SG_JOBS:-100000} MASTERS=${SG_MASTERS:-10} HISTORY=${SG_HISTORY:-10}
DURATION=${SG_DURATION:-4h} DEADLINE=${SG_DEADLINE:-1200}
work=$(mktemp -d /tmp/sg-bench-sim-XXXXXX)
trap 'rm -rf "$work"' EXIT

# timed NAME ARGS...: runs stormguard ARGS, prints "NAME seconds KiB" to
# $work/times and the row of the table to stdout
timed() {
  local name=$1
  shift
  local rc=0
  timeout "$DEADLINE" /usr/bin/time -f "%e %M" -o "$work/time" "$sg" "$@" >"$work/out" 2>"$work/err" || rc=$?
  if [ $rc != 0 ]; then
    echo "$name: exit $rc$([ $rc = 124 ] && echo " (killed after $DEADLINE s)"): $(tail -n 3 "$work/err")"
    echo "$name - -" >>"$work/times"
    return 0
  fi
  echo "$name $(cat "$work/time")" >>"$work/times"
  tail -n +3 "$work/out"
}

: >"$work/times"
echo "== seed scenario, every defence"
timed seed-all simulate simulations/spinnaker-flushall.json
for d in none igor-threshold igor-first-builds-off igor-lookback nginx-limit stormguard; do
  timed "seed-$d" simulate simulations/spinnaker-flushall.json --defence "$d" >/dev/null
done

python3 - "$work/scale.json" "$JOBS" "$MASTERS" "$HISTORY" "$DURATION" <<'PY'
import json, sys
path, jobs, masters, history, duration = sys.argv[1], *map(int, sys.argv[2:5]), sys.argv[5]
per = jobs // masters
doc = {
    "name": "scale-%d" % jobs,
    "about": "bench_simulate.sh: %d jobs over %d masters, one FLUSHALL" % (per * masters, masters),
    "seed": 1, "duration": duration,
    "igor": {"poll_interval": "60s", "item_upper_threshold": 1000, "handle_first_builds": True,
             "look_back_window": "10m", "post_latency": "20ms"},
    "masters": [{"name": "jenkins-%02d" % i, "jobs": per, "history": history,
                 "build_every": "45m", "build_duration": "6m", "success_rate": 0.9,
                 "out_of_order": 0.05, "pipelines_per_job": 1} for i in range(masters)],
    "faults": [{"at": "60m", "kind": "flushall"}],
    "stormguard": {"starts_at": "0s", "rewarm": False},
    "operator": {"reacts_after": "15m", "action": "release-newest"},
}
json.dump(doc, open(path, "w"), indent=1)
PY
echo
echo "== scale: $JOBS jobs over $MASTERS masters, history $HISTORY, $DURATION, FLUSHALL at 60m"
timed scale-none simulate "$work/scale.json" --defence none
timed scale-stormguard simulate "$work/scale.json" --defence stormguard | tail -n 1

echo
echo "== figures (this machine: $(nproc) cores, $(date -u +%FT%TZ))"
python3 - "$work/times" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
target = {"seed-all": (10, None), "scale-none": (300, 1 << 20), "scale-stormguard": (300, 1 << 20)}
print("%-28s %10s %12s %18s %18s" % ("run", "wall s", "peak RSS MiB", "vs time target", "vs RSS target"))
for name, secs, kib in rows:
    t, m = target.get(name, (None, None))
    if secs == "-":
        print("%-28s %10s %12s" % (name, "failed", "-"))
        continue
    s, k = float(secs), int(kib)
    print("%-28s %10.2f %12.1f %18s %18s" % (
        name, s, k / 1024.0,
        "%.2f of %d s" % (s / t, t) if t else "",
        "%.2f of %d MiB" % (k / m, m >> 10) if m else ""))
PY
