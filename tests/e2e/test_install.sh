#!/usr/bin/env bash
# cmake --install: the binary (bin/stormguard, the one built), the systemd
# unit (lib/systemd/system/stormguard.service, the source's with its binary
# paths naming the installed binary, which systemd-analyze verify then
# accepts as installed) and the example configuration
# (share/doc/stormguard/stormguard.ini.example, deploy/stormguard.ini as is);
# with DESTDIR the files go under it while the unit names the final path;
# the man page (written from --help: a section per command with its flags,
# no groff warning) and the bash completion (commands and flags).
source "$SG_TESTS/lib.sh"

BUILD=$(dirname "$SG_BIN")
[ -f "$BUILD/cmake_install.cmake" ] || fail "$BUILD is not a CMake build directory"
DEPLOY=$SG_TESTS/../deploy

run cmake --install "$BUILD" --prefix "$TMP/prefix"
assert_rc 0 "cmake --install --prefix $TMP/prefix"
P=$TMP/prefix
[ -x "$P/bin/stormguard" ] || fail "bin/stormguard not installed"
cmp -s "$SG_BIN" "$P/bin/stormguard" || fail "bin/stormguard is not the built binary"
ok "bin/stormguard, the built binary"
run "$P/bin/stormguard" version
assert_rc 0 "the installed binary runs"

UNIT=$P/lib/systemd/system/stormguard.service
[ -f "$UNIT" ] || fail "lib/systemd/system/stormguard.service not installed"
diff <(sed "s|/usr/bin/stormguard|$P/bin/stormguard|g" "$DEPLOY/systemd/stormguard.service") "$UNIT" ||
    fail "the installed unit is not deploy/systemd/stormguard.service with the binary's path"
ok "lib/systemd/system/stormguard.service: the source's, naming $P/bin/stormguard"
assert_contains "$(grep '^ExecStartPre=' "$UNIT")" "$P/bin/stormguard config -c /etc/stormguard/stormguard.ini" \
    "the installed unit's pre-start check runs the installed binary"
if command -v systemd-analyze >/dev/null; then
    VOUT=$(systemd-analyze verify --man=no "$UNIT" 2>&1) || fail "verify of the installed unit: $VOUT"
    [ -z "$VOUT" ] || fail "verify of the installed unit warns: $VOUT"
    ok "systemd-analyze verify accepts the installed unit as it is"
else
    echo "# systemd-analyze not found: the installed unit is not verified"
fi

EX=$P/share/doc/stormguard/stormguard.ini.example
[ -f "$EX" ] || fail "share/doc/stormguard/stormguard.ini.example not installed"
cmp -s "$DEPLOY/stormguard.ini" "$EX" || fail "the example is not deploy/stormguard.ini"
ok "share/doc/stormguard/stormguard.ini.example, deploy/stormguard.ini"
run "$P/bin/stormguard" config -c "$EX" --db "$SG_DB" --downstream http://127.0.0.1:8089
assert_rc 0 "the installed binary accepts the installed example"

MAN=$P/share/man/man1/stormguard.1
[ -f "$MAN" ] || fail "share/man/man1/stormguard.1 not installed"
WARN=$(groff -man -Tutf8 -ww -z "$MAN" 2>&1)
[ -z "$WARN" ] || fail "groff warns about the man page: $WARN"
PAGE=$(MANWIDTH=200 man -l "$MAN" 2>/dev/null)
for c in $("$SG_BIN" --help | awk '/^commands:/ {on = 1; next} on && /^  [a-z]/ {print $1}'); do
    for flag in $("$SG_BIN" "$c" --help | awk '/^options:/ {on = 1; next} on && /^$/ {on = 0} on' |
        grep -o -- '^  --[a-z-]*'); do
        grep -q -- "$flag" <<<"$PAGE" || fail "the man page lacks $c's $flag"
    done
    grep -q "STORMGUARD $(echo "$c" | tr a-z A-Z)" <<<"$PAGE" || fail "the man page has no section for $c"
done
ok "share/man/man1/stormguard.1: renders without a warning, a section per command with its flags"

COMP=$P/share/bash-completion/completions/stormguard
[ -f "$COMP" ] || fail "share/bash-completion/completions/stormguard not installed"
# complete WORDS...: what the completion offers for the last word
complete_words() {
    bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _stormguard
        printf "%s\n" "${COMPREPLY[@]}"' _ "$COMP" "$@"
}
assert_eq "flush" "$(complete_words "$P/bin/stormguard" fl)" "completion: fl -> flush"
assert_eq "--dry-run" "$(complete_words "$P/bin/stormguard" flush --dry)" "completion: flush --dry -> --dry-run"
assert_contains "$(complete_words "$P/bin/stormguard" run --obs)" "--observe" "completion: run --obs -> --observe"
assert_contains "$(complete_words "$P/bin/stormguard" status --storm-c)" "--storm-cooldown" \
    "completion: every configuration flag, also one status does not read"

echo "# DESTDIR"
DESTDIR=$TMP/dest run cmake --install "$BUILD" --prefix /usr
assert_rc 0 "DESTDIR=... cmake --install --prefix /usr"
for f in usr/bin/stormguard usr/lib/systemd/system/stormguard.service \
    usr/share/doc/stormguard/stormguard.ini.example; do
    [ -f "$TMP/dest/$f" ] || fail "$f not under DESTDIR"
done
ok "the files under DESTDIR"
cmp -s "$DEPLOY/systemd/stormguard.service" "$TMP/dest/usr/lib/systemd/system/stormguard.service" ||
    fail "with --prefix /usr the unit should be the source's as is (ExecStart=/usr/bin/stormguard)"
ok "the unit names /usr/bin/stormguard, not the DESTDIR"

finish
