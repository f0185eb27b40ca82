#!/usr/bin/env bash
# Before and after: runs benchmarks of this tree and of an earlier revision
# on this machine in one run, interleaved (the earlier revision's run of a
# benchmark, then this tree's, then the next benchmark), so both see the
# same machine at nearly the same time. Each revision is built by its own
# copy of the benchmark (Release, its own build-bench); the earlier one is
# checked out into a temporary git worktree. Prints each benchmark's report
# of both revisions one after the other, under a heading naming the
# revision, and keeps the full logs in OUT (default: a temporary directory,
# named at the end).
#
# usage: tests/bench/bench_compare.sh REV [BENCH...]
#   REV    any git revision (a commit, a tag, main~3)
#   BENCH  bench_gate bench_snapshot bench_detect bench_held_rss (default:
#          all four); arguments for one go after a colon:
#          bench_snapshot:200000:3
# environment: OUT (where the logs go)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
rev=$1
shift
base=$(git rev-parse --verify --quiet "$rev^{commit}") ||
  { echo "bench_compare: $rev names no commit of this repository" >&2; exit 2; }
benches=("$@")
[ ${#benches[@]} -gt 0 ] || benches=(bench_gate bench_snapshot bench_detect bench_held_rss)
for b in "${benches[@]}"; do
  name=${b%%:*}
  [ -x "tests/bench/$name.sh" ] || { echo "bench_compare: no benchmark tests/bench/$name.sh" >&2; exit 2; }
  git cat-file -e "$base:tests/bench/$name.sh" 2>/dev/null ||
    { echo "bench_compare: revision $rev has no tests/bench/$name.sh" >&2; exit 2; }
done

out=${OUT:-$(mktemp -d /tmp/sg-bench-compare-XXXXXX)}
mkdir -p "$out"
wt=$(mktemp -d /tmp/sg-bench-base-XXXXXX)
rmdir "$wt"
cleanup() { git worktree remove --force "$wt" 2>/dev/null || rm -rf "$wt"; }
trap cleanup EXIT
git worktree add --detach --quiet "$wt" "$base"
# The earlier revision is built only to be measured: a warning a newer
# compiler finds in it must not stop the comparison. The cache keeps the
# option for the benchmarks' own configure runs.
cmake -S "$wt" -B "$wt/build-bench" -DCMAKE_BUILD_TYPE=Release -DSG_WERROR=OFF >/dev/null
head=$(git rev-parse --short HEAD)
dirty=$(git status --porcelain --untracked-files=no | head -1)
short=$(git rev-parse --short "$base")

run() { # dir label name args...
  local dir=$1 label=$2 name=$3
  shift 3
  echo "== $name, $label" | tee -a "$out/summary.txt"
  if (cd "$dir" && "tests/bench/$name.sh" "$@") >"$out/$name.$label.log" 2>&1; then
    tail -n "${TAIL:-25}" "$out/$name.$label.log" | tee -a "$out/summary.txt"
  else
    echo "(failed, exit $?: see $out/$name.$label.log)" | tee -a "$out/summary.txt"
    tail -n 5 "$out/$name.$label.log" | tee -a "$out/summary.txt"
  fi
  echo | tee -a "$out/summary.txt"
}

echo "bench_compare: $short ($rev) against $head${dirty:+ with uncommitted changes}, $(nproc) cores, $(date -u +%FT%TZ)" |
  tee "$out/summary.txt"
for b in "${benches[@]}"; do
  name=${b%%:*}
  args=()
  [ "$name" = "$b" ] || IFS=: read -r -a args <<<"${b#*:}"
  run "$wt" "before-$short" "$name" "${args[@]}"
  run "$PWD" "after-$head" "$name" "${args[@]}"
done
echo "bench_compare: logs in $out"
