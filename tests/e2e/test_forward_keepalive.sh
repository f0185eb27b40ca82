#!/usr/bin/env bash
# stormguard run keeps its connections to the downstream between bursts:
# two bursts of concurrent deliveries with a lull between them go over the
# same connections, never more than --max-inflight of them: a connection is
# back in the pool before the next delivery starts, and stays there through
# the 1 s lull (closed after 2 s idle).
source "$SG_TESTS/lib.sh"

start_sink
start_gate --max-inflight 8
sink_set 200 300 # each delivery takes 300 ms: up to 8 run at once

delivered() { [ "$(sink_count)" -ge "$1" ]; }
for burst in 1 2; do
    echo "# burst $burst: 16 builds of 16 jobs"
    for i in $(seq 1 16); do
        gate_post / "$(igor_event team-k/job-$i $burst $((1526040000000 + burst)))"
        assert_eq 200 "$HTTP_STATUS" "burst $burst, build of job-$i accepted"
    done
    wait_for 30 "burst $burst delivered" delivered $((16 * burst))
    sleep 1
done
PEERS=$(sink_py 'print(len({r["peer"] for r in ok}))')
MAXAT=$(sink_py '
ev = sorted([(r["t"] - 0.3, 1) for r in ok] + [(r["t"], -1) for r in ok])
n = m = 0
for _, d in ev:
    n += d
    m = max(m, n)
print(m)')
echo "# $PEERS connections, up to $MAXAT deliveries at once"
assert_eq 1 "$(( MAXAT >= 4 ))" "deliveries overlapped ($MAXAT at once)"
assert_le "$PEERS" 8 "32 deliveries over at most 8 connections"

finish
