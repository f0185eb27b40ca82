#!/usr/bin/env bash
# simulations/live.sh against the virtual simulation: a short scenario (60
# jobs with 10 builds of history, a FLUSHALL at 5 min, 25 new jobs at 6 min
# whose builds the gate holds until the operator releases them, 15 simulated
# minutes) runs live at --speed 60 (a real redis-server, the real `stormguard
# run`, the Jenkins-and-Igor emulator and the Echo stand-in) and in virtual
# time. The live rows agree with the virtual ones: none's entirely (the
# emulator decides in virtual time, as the simulator's Igor does), the
# stormguard row on spurious, genuine_lost, held_at_end and Igor's posts
# (its delays may differ: the gate delivers asynchronously, and released
# events at its next 1 s tick, 60 s simulated). none's spurious count is
# the one the rules give: every SUCCESS build Echo had triggered before the
# flush (the history's, and the run's builds that ended before Igor's last
# look before it) triggers once more. Unsupported faults are refused before
# anything starts, and no process outlives the script.
source "$SG_TESTS/lib.sh"

LIVE=$(cd "$SG_TESTS/.." && pwd)/simulations/live.sh
[ -x "$LIVE" ] || fail "$LIVE is not executable"

cat >"$TMP/scenario.json" <<'EOF'
{"name": "live-e2e", "seed": 7, "duration": "15m",
 "igor": {"poll_interval": "60s", "post_latency": "50ms"},
 "masters": [{"name": "jenkins-prod", "jobs": 60, "history": 10, "build_every": "10m",
              "build_duration": "2m", "success_rate": 0.9, "out_of_order": 0.05,
              "pipelines_per_job": 1}],
 "faults": [{"at": "5m", "kind": "flushall"}],
 "changes": [{"at": "6m", "kind": "new_jobs", "master": "jenkins-prod", "count": 25,
              "history": 1}],
 "stormguard": {"starts_at": "0s", "rewarm": false},
 "operator": {"reacts_after": "3m", "action": "release-newest"}}
EOF

# ---- refusals, before anything starts ----

sed 's/"kind": "flushall"/"kind": "evict", "fraction": 0.3/' "$TMP/scenario.json" >"$TMP/evict.json"
run env TMPDIR="$TMP" "$LIVE" "$TMP/evict.json"
assert_rc 2 "an eviction is refused"
assert_contains "$ERR" "faults[0] evict" "the refusal names the fault"
run env TMPDIR="$TMP" "$LIVE" "$TMP/scenario.json" --defence nginx-limit
assert_rc 2 "only none and stormguard run live"
run env TMPDIR="$TMP" "$LIVE" "$TMP/scenario.json" --speed 0
assert_rc 2 "--speed 0 is a usage error"

# ---- the live run (about 20 s of wall time per defence) ----

START=$(date +%s)
run timeout -k 5 150 env TMPDIR="$TMP" "$LIVE" "$TMP/scenario.json" --speed 60
[ "$RC" = 0 ] || echo "$ERR" | tail -n 30 >&2
assert_rc 0 "live.sh runs the scenario live under none and stormguard"
echo "# live.sh took $(($(date +%s) - START)) s"
LIVE_JSON=$OUT
assert_eq "True 60 900 live-e2e 7" \
    "$(json_get "$LIVE_JSON" "' '.join(map(str, [d['live'], d['speed'], d['duration_s'], d['scenario'], d['seed']]))")" \
    "the document names the scenario, its seed and duration, live and the speed"
assert_eq "none stormguard" "$(json_get "$LIVE_JSON" "' '.join(r['name'] for r in d['defences'])")" \
    "one row per defence"
assert_eq 10s "$(json_get "$LIVE_JSON" "[s['live'] for s in d['scaled'] if s['flag'] == '--guard-duration'][0]")" \
    "the daemon's guard duration is scaled (10 min simulated: 10 s)"
leftover=$(ps -eo pid=,args= | grep -F "$TMP/stormguard-live." | grep -v grep || true)
assert_eq "" "$leftover" "no process of the run is left"
compgen -G "$TMP/stormguard-live.*" >/dev/null && fail "the work directory is left"
ok "the work directory is removed"

run "$SG_BIN" simulate "$TMP/scenario.json" --json --defence none --defence stormguard
assert_rc 0 "the virtual run"
VIRT=$OUT

field() { json_get "$1" "[r for r in d['defences'] if r['name'] == '$2'][0]['$3']"; }

# none: the emulator's Igor posts what the simulator's posts, at the same
# virtual times, straight to Echo: every field is the same
strip='{k: v for k, v in [r for r in d["defences"] if r["name"] == "none"][0].items() if k != "live"}'
assert_eq "$(json_get "$VIRT" "$strip")" "$(json_get "$LIVE_JSON" "$strip")" \
    "none: the live row is the virtual row, field by field"

for f in spurious genuine_lost held_at_end posts answered_503; do
    assert_eq "$(field "$VIRT" stormguard $f)" "$(field "$LIVE_JSON" stormguard $f)" \
        "stormguard: $f live = virtual"
done
assert_eq 0 "$(field "$LIVE_JSON" stormguard spurious)" "stormguard: no replay reached Echo"
assert_le 1 "$(field "$LIVE_JSON" stormguard operator_actions)" \
    "stormguard: the new jobs' builds were held and the operator released them"

# ---- none's spurious count by the rules ----

"$SG_BIN" simulate "$TMP/scenario.json" --world "$TMP/world.json"
expected=$("$PY" - "$TMP/world.json" <<'EOF'
import json, sys
w = json.load(open(sys.argv[1]))
FLUSH, POLL, LATENCY = 300000, 60000, 50
jobs = [j for m in w["masters"] for j in m["jobs"] if j["announced"]]
run = [b for j in jobs for b in j["builds"][j["history"]:]]
# Igor looks 1 s after the start, then a poll interval after each cycle,
# which its posts (one per build that ended since its last look, 50 ms
# each) make longer
looks = [1000]
while True:
    since = looks[-2] if len(looks) > 1 else 0
    posts = sum(1 for b in run if since < b[1] <= looks[-1])
    nxt = looks[-1] + POLL + LATENCY * posts
    if nxt >= FLUSH:
        break
    looks.append(nxt)
last = looks[-1]
near = [b for b in run if abs(b[1] - last) < 2000]
if near:
    sys.exit("builds end within 2 s of Igor's last look before the flush (%d ms): %s; "
             "choose another seed" % (last, near))
history = sum(b[2] for j in jobs for b in j["builds"][:j["history"]])
before = sum(b[2] for b in run if b[1] <= last)
print(history + before)
EOF
)
assert_eq "$expected" "$(field "$LIVE_JSON" none spurious)" \
    "none: every SUCCESS build triggered before the flush triggers again, once ($expected)"

finish
