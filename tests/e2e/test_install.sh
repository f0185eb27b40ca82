#!/usr/bin/env bash
# cmake --install: the binary (bin/stormguard, the one built), the systemd
# unit (lib/systemd/system/stormguard.service, the source's with its binary
# paths naming the installed binary, which systemd-analyze verify then
# accepts as installed) and the example configuration
# (share/doc/stormguard/stormguard.ini.example, deploy/stormguard.ini as is);
# with DESTDIR the files go under it while the unit names the final path.
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
