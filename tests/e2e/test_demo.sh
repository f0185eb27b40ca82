#!/usr/bin/env bash
# The README's demo (scripts/demo.sh), as someone runs it from a copy of a
# checkout: the copy carries the original's configured build folder, whose
# CMakeCache.txt names the original source dir (CMake refuses such a cache),
# and stdout is a file, not a terminal. The demo runs with SG_DEMO_BIN set to
# the binary under test, so it configures its build folder but compiles
# nothing. Checked: it runs to the end and says it started the stale build
# folder afresh; no escape code reaches the file (nor a terminal with
# NO_COLOR set); every notifier line ("  notifier <- JOB #N") is a whole line
# of its own; the last status table counts the 2 superseded builds.
source "$(dirname "$0")/../lib.sh"
command -v cmake >/dev/null || fail "cmake not found (the demo configures a build folder)"
SRC=$(cd "$SG_TESTS/.." && pwd -P)
[ -x "$SRC/scripts/demo.sh" ] || fail "no scripts/demo.sh in $SRC"
unset NO_COLOR
T=$(cd "$TMP" && pwd -P) # as CMake and the demo name it

DEMO_PID=
# run_demo OUT CMD...: CMD (the demo) with SG_DEMO_BIN=$SG_BIN, stdin from
# /dev/null, stdout and stderr to OUT, at most 120 s; sets RC. On a timeout
# it gets SIGTERM (the demo's EXIT trap stops what it started), then SIGKILL.
run_demo() {
    local out=$1 i
    shift
    SG_DEMO_BIN=$SG_BIN "$@" </dev/null >"$out" 2>&1 &
    DEMO_PID=$!
    bg_track "$DEMO_PID"
    _sg_watchdog $$ "$DEMO_PID" </dev/null >/dev/null 2>&1 &
    bg_track "$!"
    for i in $(seq 1 1200); do
        kill -0 "$DEMO_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$DEMO_PID" 2>/dev/null; then
        kill "$DEMO_PID" 2>/dev/null || true
        for i in $(seq 1 100); do
            kill -0 "$DEMO_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$DEMO_PID" 2>/dev/null || true
        wait "$DEMO_PID" 2>/dev/null || true
        tail -n 40 "$out" >&2
        fail "scripts/demo.sh did not finish within 120 s"
    fi
    RC=0
    wait "$DEMO_PID" || RC=$?
}

echo "# a checkout with a configured build folder, copied elsewhere"
shopt -s dotglob
mkdir "$T/orig"
for f in "$SRC"/*; do
    case ${f##*/} in
    .git | build*) continue ;;
    esac
    cp -r "$f" "$T/orig/"
done
shopt -u dotglob
cmake -S "$T/orig" -B "$T/orig/build" -DSG_TESTS=OFF >"$T/cmake.out" 2>&1 ||
    { cat "$T/cmake.out" >&2; fail "configuring the original checkout"; }
cp -r "$T/orig" "$T/copy"
grep -q "^CMAKE_HOME_DIRECTORY:INTERNAL=$T/orig\$" "$T/copy/build/CMakeCache.txt" ||
    fail "the copy's build folder names the original source dir"
ok "the copy's build/CMakeCache.txt was made for $T/orig"

echo "# scripts/demo.sh | cat, from the copy"
run_demo "$T/demo.out" "$T/copy/scripts/demo.sh"
[ "$RC" = 0 ] || fail "scripts/demo.sh exited $RC:
$(tail -n 40 "$T/demo.out")"
ok "the demo runs to the end from the copy"
assert_eq 1 "$(grep -c "^demo: build/ was configured for $T/orig, not $T/copy" "$T/demo.out")" \
    "it says in one line that it starts the stale build folder afresh"
grep -q "^CMAKE_HOME_DIRECTORY:INTERNAL=$T/copy\$" "$T/copy/build/CMakeCache.txt" ||
    fail "the copy's build folder is configured for the copy now"
ok "the copy's build folder is configured for the copy"

assert_eq 0 "$(LC_ALL=C grep -c $'\x1b' "$T/demo.out" || true)" \
    "no escape codes when stdout is not a terminal"

# A notifier line is "  notifier <- JOB #N"; one that begins anywhere else
# landed in the middle of the narration's line.
assert_eq "" "$(grep -n 'notifier <-' "$T/demo.out" | grep -v ':  notifier <- [^ ]* #[0-9]*$' || true)" \
    "no notifier line starts mid-line"
assert_eq 2 "$(grep -c '^  notifier <- [^ ]* #[0-9]*$' "$T/demo.out" || true)" \
    "both forwarded builds reach the notifier, each on a line of its own"
assert_eq "  notifier <- team-1/service-1 #900" \
    "$(grep -A1 'post team-1/service-1 *#900 ' "$T/demo.out" | sed -n 2p)" \
    "the notifier's line follows the post it answers"

# The last status table: KIND PENDING ... SUPERSEDED ... with one row a kind.
superseded=$(awk '
    $1 == "KIND" { col = 0; for (i = 1; i <= NF; i++) if ($i == "SUPERSEDED") col = i; n = "" }
    $1 == "unknown" && col { n = $col }
    END { print n }' "$T/demo.out")
assert_eq 2 "$superseded" "the status table counts the 2 superseded builds"

echo "# the copy again, on a terminal, with NO_COLOR set"
if ! script -qec true /dev/null </dev/null >/dev/null 2>&1; then
    echo "# skip: script(1) cannot give the demo a terminal here"
else
    run_demo "$T/demo-tty.out" env NO_COLOR=1 script -qec "$T/copy/scripts/demo.sh" /dev/null
    [ "$RC" = 0 ] || fail "scripts/demo.sh on a terminal exited $RC:
$(tail -n 40 "$T/demo-tty.out")"
    ok "the demo runs on a terminal"
    assert_not_contains "$(cat "$T/demo-tty.out")" "was configured for" \
        "a build folder configured for this checkout is kept"
    assert_eq 0 "$(LC_ALL=C grep -c $'\x1b' "$T/demo-tty.out" || true)" \
        "no escape codes on a terminal with NO_COLOR set"
fi
finish
