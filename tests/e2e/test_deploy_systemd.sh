#!/usr/bin/env bash
# deploy/systemd/stormguard.service: `systemd-analyze verify` passes without
# a word on a copy whose binary paths name the built stormguard (verify
# checks that ExecStart= and ExecStartPre= are executable), and the same
# verify does catch a misspelled directive and a missing binary, so its
# silence means something; `systemd-analyze security --offline` rates the
# unit at most 1.5 (the hardening cannot quietly go); Type=notify with a
# watchdog and ExecReload (SIGHUP reloads the log file); the ExecStartPre
# pre-start check and the ExecStart arguments, given the example
# configuration with a downstream, are accepted by `stormguard config`, and
# the pre-start check refuses the example without one. Skipped, saying so,
# where systemd-analyze is missing.
source "$SG_TESTS/lib.sh"

UNIT=$SG_TESTS/../deploy/systemd/stormguard.service
[ -f "$UNIT" ] || fail "$UNIT is missing"
command -v systemd-analyze >/dev/null ||
    skip "systemd-analyze not found (Debian's systemd package): the unit is not verified"

mkdir -p "$TMP/units"
COPY=$TMP/units/stormguard.service
sed "s|/usr/bin/stormguard|$SG_BIN|g" "$UNIT" >"$COPY"
grep -q "^ExecStart=$SG_BIN run " "$COPY" || fail "ExecStart does not name /usr/bin/stormguard run"
ok "the copy's ExecStart names the built binary"

# verify UNIT: sets RC and OUT (stdout and stderr together)
verify() {
    RC=0
    OUT=$(systemd-analyze verify --man=no "$1" 2>&1) || RC=$?
}

echo "# systemd-analyze verify"
verify "$COPY"
[ "$RC" = 0 ] && [ -z "$OUT" ] || fail "systemd-analyze verify: exit $RC: $OUT"
ok "systemd-analyze verify: exit 0, no warning"
sed 's/^ProtectHome=yes$/ProtectHome=yess\nProtectHomee=yes/' "$COPY" >"$TMP/units/typo.service"
verify "$TMP/units/typo.service"
assert_contains "$OUT" "Unknown key 'ProtectHomee'" "verify reports a misspelled directive"
assert_contains "$OUT" "yess" "verify reports a bad value"
sed "s|^ExecStart=$SG_BIN|ExecStart=$TMP/nonexistent|" "$COPY" >"$TMP/units/nobin.service"
verify "$TMP/units/nobin.service"
assert_ne 0 "$RC" "verify fails when ExecStart's binary is missing"
assert_contains "$OUT" "is not executable" "and says so"

echo "# systemd-analyze security"
SEC=$(systemd-analyze security --offline=yes "$COPY" 2>&1) || fail "systemd-analyze security failed: $SEC"
SCORE=$(sed -n 's/.*Overall exposure level for stormguard.service: \([0-9.]*\).*/\1/p' <<<"$SEC")
[ -n "$SCORE" ] || fail "no exposure level in: $SEC"
echo "# exposure level $SCORE"
"$PY" -c "import sys; sys.exit(0 if float('$SCORE') <= 1.5 else 1)" ||
    fail "exposure level $SCORE is over 1.5: $(grep '✗' <<<"$SEC")"
ok "systemd-analyze security: exposure $SCORE, at most 1.5"
systemd-analyze security --offline=yes --threshold=15 "$COPY" >/dev/null 2>&1 ||
    fail "--threshold=15 (1.5) refused the unit"
ok "--threshold=15 agrees"

echo "# the service's settings"
for line in Type=notify NotifyAccess=main "ExecReload=/bin/kill -HUP \$MAINPID" DynamicUser=yes \
    StateDirectory=stormguard ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
    PrivateDevices=yes NoNewPrivileges=yes "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" \
    SystemCallFilter=@system-service CapabilityBoundingSet= LockPersonality=yes \
    MemoryDenyWriteExecute=yes RestrictNamespaces=yes ProtectKernelTunables=yes \
    ProtectKernelModules=yes ProtectKernelLogs=yes ProtectControlGroups=yes ProtectClock=yes; do
    grep -qxF "$line" "$UNIT" || fail "the unit lacks $line"
done
ok "Type=notify, ExecReload, the sandbox"
WD=$(sed -n 's/^WatchdogSec=\([0-9]*\)s$/\1/p' "$UNIT")
[ -n "$WD" ] && [ "$WD" -ge 10 ] || fail "WatchdogSec= must be set, in seconds, 10 or more"
ok "WatchdogSec=${WD}s (the daemon beats every $((WD / 2)) s)"

echo "# the pre-start check and the daemon's arguments"
# the example configuration at /etc/stormguard/stormguard.ini, here a copy
CONF=$TMP/stormguard.ini
cp "$SG_TESTS/../deploy/stormguard.ini" "$CONF"
args_of() { # args_of DIRECTIVE: its command line after the binary, the config path mapped
    sed -n "s|^$1=$SG_BIN ||p" "$COPY" | sed "s|/etc/stormguard/stormguard.ini|$CONF|g"
}
PRE=$(args_of ExecStartPre)
START=$(args_of ExecStart)
assert_eq "config -c $CONF" "$PRE" "ExecStartPre is stormguard config -c /etc/stormguard/stormguard.ini"
assert_eq "run -c $CONF" "$START" "ExecStart runs the same file"
# shellcheck disable=SC2086
run "$SG_BIN" $PRE
assert_rc 2 "the pre-start check refuses the example as shipped (no downstream)"
assert_contains "$ERR" "no downstream" "and says why"
printf '\n[gate]\ndownstream = http://127.0.0.1:8089\n' >>"$CONF"
# shellcheck disable=SC2086
run "$SG_BIN" $PRE
assert_rc 0 "the pre-start check passes once a downstream is set"
# shellcheck disable=SC2086
run "$SG_BIN" config ${START#run }
assert_rc 0 "config accepts ExecStart's arguments"

finish
