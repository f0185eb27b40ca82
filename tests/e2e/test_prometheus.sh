#!/usr/bin/env bash
# The monitoring files of deploy/ against the code: the alert and recording
# rules pass `promtool check rules` and their unit tests (`promtool test
# rules`: every alert firing and not); every metric the rules and the
# Grafana dashboard name is one a live `stormguard run` exports on
# /metrics (histograms as _bucket, _sum, _count), so they cannot drift from
# admin.c; every alert has a summary, a description and a runbook_url whose
# anchor is a heading of docs/runbook.md. tests/promql_names.py does the
# parsing (python3-yaml for the rules).
source "$SG_TESTS/lib.sh"
command -v promtool >/dev/null || fail "promtool not found (scripts/setup.sh installs prometheus)"
ROOT=$(cd "$SG_TESTS/.." && pwd)
RULES=$ROOT/deploy/prometheus/stormguard-rules.yml
DASH=$ROOT/deploy/grafana/stormguard.json
RUNBOOK=$ROOT/docs/runbook.md
NAMES=$SG_TESTS/promql_names.py

echo "# promtool"
run promtool check rules "$RULES"
assert_rc 0 "promtool check rules"
assert_contains "$OUT" "SUCCESS" "promtool check rules: SUCCESS"
run promtool test rules "$ROOT/deploy/prometheus/stormguard-rules.test.yml"
assert_rc 0 "promtool test rules stormguard-rules.test.yml"
ALERTS=$("$PY" -c '
import sys, yaml
print(" ".join(sorted(r["alert"] for g in yaml.safe_load(open(sys.argv[1]))["groups"]
                      for r in g["rules"] if "alert" in r)))' "$RULES")
TESTED=$("$PY" -c '
import sys, yaml
fired, quiet = set(), set()
for t in yaml.safe_load(open(sys.argv[1]))["tests"]:
    for a in t.get("alert_rule_test", []):
        (fired if a.get("exp_alerts") else quiet).add(a["alertname"])
print(" ".join(sorted(fired & quiet)))' "$ROOT/deploy/prometheus/stormguard-rules.test.yml")
assert_eq "$ALERTS" "$TESTED" "the rule tests have every alert both firing and not firing"

echo "# the checker itself"
assert_eq "stormguard_forward_seconds_bucket" \
    "$("$PY" "$NAMES" names 'histogram_quantile(0.99, sum by (le, instance) (rate(stormguard_forward_seconds_bucket{instance=~"$instance"}[$__rate_interval])))')" \
    "names: functions, grouping labels, matchers, ranges and variables are not metrics"
assert_eq "a_total b c" \
    "$("$PY" "$NAMES" names 'a_total - b offset 15m > 3 * c and on (job) up{x="y"} > 1e6' | grep -v '^up$' | tr '\n' ' ' | sed 's/ $//')" \
    "names: offset, keywords and numbers are not metrics"

echo "# against a live daemon's /metrics"
start_redis
seed_igor 2
start_sink
start_gate --redis "redis://127.0.0.1:$PORT" --profile igor
has_process() { curl -sf "http://$ADMIN/metrics" | grep -q '^process_open_fds '; }
wait_for 5 "the process metrics" has_process
curl -sf --max-time 10 "http://$ADMIN/metrics" >"$TMP/scrape.txt"
run "$PY" "$NAMES" rules "$RULES" "$TMP/scrape.txt" "$RUNBOOK"
assert_rc 0 "every metric of the rules is exported, every runbook_url anchor is a runbook heading"
run "$PY" "$NAMES" dashboard "$DASH" "$TMP/scrape.txt"
assert_rc 0 "every metric of the dashboard's expressions is exported"
assert_contains "$OUT" "expressions checked" "the dashboard's expressions were found"

echo "# and the checks catch drift"
sed 's/stormguard_held_oldest_age_seconds/stormguard_held_oldest_age_minutes/' "$RULES" >"$TMP/rules.yml"
run "$PY" "$NAMES" rules "$TMP/rules.yml" "$TMP/scrape.txt" "$RUNBOOK"
assert_rc 1 "a rule naming a metric the daemon does not export fails"
assert_contains "$ERR" "stormguard_held_oldest_age_minutes is not exported" "and says which"
sed 's/#stormguardeventsheld/#stormguard-events-held/' "$RULES" >"$TMP/rules.yml"
run "$PY" "$NAMES" rules "$TMP/rules.yml" "$TMP/scrape.txt" "$RUNBOOK"
assert_rc 1 "a runbook_url anchor that is no heading fails"
sed 's/stormguard_forward_seconds_bucket/stormguard_forward_seconds/' "$DASH" >"$TMP/dash.json"
run "$PY" "$NAMES" dashboard "$TMP/dash.json" "$TMP/scrape.txt"
assert_rc 1 "a dashboard reading a histogram without its _bucket suffix fails"
grep -v '^stormguard_pending_oldest_age_seconds\|TYPE stormguard_pending_oldest_age_seconds' \
    "$TMP/scrape.txt" >"$TMP/scrape-less.txt"
run "$PY" "$NAMES" dashboard "$DASH" "$TMP/scrape-less.txt"
assert_rc 1 "a dashboard metric the daemon stopped exporting fails"

stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM: exit 0"
finish
