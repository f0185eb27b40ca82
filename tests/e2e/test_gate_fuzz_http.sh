#!/usr/bin/env bash
# A mutational HTTP fuzzer against the running gate (tests/fuzz/http_fuzz.py,
# 3,000 requests; tests/fuzz/http_fuzz.sh runs it longer): whatever the
# request line, headers, framing or body, "answered 200 <=> journaled <=>
# delivered exactly once, as posted, or suppressed as a true replay", no
# 5xx but 503, and the gate keeps serving. SG_FUZZ_SEED repeats a run.
source "$SG_TESTS/lib.sh"

start_sink
start_gate --max-body 64k
SEED=${SG_FUZZ_SEED:-$RANDOM}
run "$PY" "$SG_TESTS/fuzz/http_fuzz.py" --port "$GATE_PORT" --admin "$ADMIN" \
    --sink-log "$SINK_LOG" --db "$SG_DB" --out "$TMP/fuzz.jsonl" --count "${SG_FUZZ_COUNT:-3000}" --seed "$SEED"
echo "$ERR" | grep '^#' || true
assert_eq ok "$OUT" "${SG_FUZZ_COUNT:-3000} mutated requests (seed $SEED): answered 200 <=> journaled <=> delivered once or a true replay"
gate_post /healthcheck '{"ping":true}'
assert_eq 200 "$HTTP_STATUS" "the gate still serves"
stop_gate
assert_eq 0 "$GATE_RC" "SIGTERM: exit 0"
finish
