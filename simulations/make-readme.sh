#!/usr/bin/env bash
# Writes the README's "Simulations" results from a run of the seed scenario
# (simulations/spinnaker-flushall.json, every defence): the table between
# the markers <!-- simulations:table --> and <!-- /simulations:table -->,
# and the plot of triggers per minute into docs/simulations/. Nothing in
# that part of the README is written by hand.
#
# usage: simulations/make-readme.sh [--check] [STORMGUARD]
#   --check     write nothing; exit 1 if the README's table is not what a
#               run gives now (the plot is not compared: its bytes depend
#               on gnuplot's version)
#   STORMGUARD  the binary to run (default: build-release/stormguard,
#               built first with CMake in Release)
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
if [ "${1:-}" = "--check" ]; then
  check=1
  shift
fi
case "${1:-}" in
-h | --help)
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
  ;;
esac
sg=${1:-}
if [ -z "$sg" ]; then
  cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DSG_TESTS=OFF >/dev/null
  cmake --build build-release -j"$(nproc)" --target stormguard >/dev/null
  sg=build-release/stormguard
fi
[ -x "$sg" ] || { echo "make-readme: $sg is not an executable" >&2; exit 2; }

scenario=simulations/spinnaker-flushall.json
out=$(mktemp -d /tmp/sg-readme-XXXXXX)
trap 'rm -rf "$out"' EXIT
if [ $check = 1 ]; then
  "$sg" simulate "$scenario" --json >"$out/results.json"
else
  "$sg" simulate "$scenario" --out "$out" >/dev/null
fi

python3 - "$out/results.json" README.md "$check" <<'PY'
import json, sys

results, readme, check = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
doc = json.load(open(results))
begin, end = "<!-- simulations:table -->", "<!-- /simulations:table -->"
cols = [("defence", "name"), ("spurious", "spurious"), ("genuine", "genuine"),
        ("on time", "genuine_on_time"), ("delayed", "genuine_delayed"),
        ("lost", "genuine_lost"), ("superseded", "genuine_superseded"),
        ("inversions", "inversions"), ("held at end", "held_at_end"),
        ("peak per minute", "peak_triggers_per_min")]
lines = ["| " + " | ".join(c[0] for c in cols) + " |",
         "|" + "|".join("---" if i == 0 else "---:" for i in range(len(cols))) + "|"]
for d in doc["defences"]:
    cells = []
    for _, key in cols:
        v = d.get(key, "")
        cells.append("`%s`" % v if key == "name" else str(v))
    lines.append("| " + " | ".join(cells) + " |")
table = "\n".join(lines)
text = open(readme).read()
if begin not in text or end not in text:
    sys.exit("make-readme: %s has no %s ... %s markers" % (readme, begin, end))
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
new = head + begin + "\n" + table + "\n" + end + tail
if check:
    if new != text:
        sys.exit("make-readme: the table in %s is not what %s gives now: run "
                 "simulations/make-readme.sh" % (readme, doc["scenario"]))
    print("make-readme: the table in %s is current" % readme)
else:
    open(readme, "w").write(new)
    print("make-readme: wrote the %s table into %s" % (doc["scenario"], readme))
PY

if [ $check = 0 ]; then
  mkdir -p docs/simulations
  cp "$out/triggers.png" docs/simulations/spinnaker-flushall-triggers.png
  cp "$out/cumulative.png" docs/simulations/spinnaker-flushall-cumulative.png
  echo "make-readme: wrote docs/simulations/spinnaker-flushall-{triggers,cumulative}.png"
fi
