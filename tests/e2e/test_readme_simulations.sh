#!/usr/bin/env bash
# The README's "Simulations" table is what the seed scenario gives now: a
# change to the gate or the simulator that moves a number there must come
# with simulations/make-readme.sh's new table.
source "$SG_TESTS/lib.sh"

run "$SG_TESTS/../simulations/make-readme.sh" --check "$SG_BIN"
assert_eq 0 "$RC" "make-readme --check: $OUT $ERR"
assert_contains "$OUT" "is current" "the README's table is current"
finish
