#!/usr/bin/env bash
# deploy/stormguard.ini cannot drift from the binary: every key of the key
# table (what `stormguard config` dumps) is in the file once, in its
# section, as a commented-out default "; key = value", and the file names no
# other key; the keys not set by default say so. Uncommented, the file
# loads (no unknown key, no bad value) and gives exactly the binary's
# defaults; as shipped (all commented) it gives them too.
source "$SG_TESTS/lib.sh"

INI=$SG_TESTS/../deploy/stormguard.ini
[ -f "$INI" ] || fail "$INI is missing"
DOWN=http://127.0.0.1:8089 # run needs one; the file has none by default

run sgx config --db "$SG_DB" --downstream "$DOWN"
assert_rc 0 "config with no file"
DEFAULTS=$OUT

run sgx config -c "$INI" --db "$SG_DB" --downstream "$DOWN"
assert_rc 0 "config -c deploy/stormguard.ini exits 0"
assert_eq "$DEFAULTS" "$OUT" "the file as shipped gives the defaults"

# check_keys DUMP FILE OUT: compares FILE with the dump, writes FILE with
# its defaults uncommented to OUT, prints how many keys the binary has.
check_keys() {
    "$PY" - "$@" <<'EOF'

import re, sys
dump, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
# the binary's keys: section -> {key: value or None (not set)}
want, section = {}, None
for line in dump.splitlines():
    if line.startswith("["):
        section = line.strip("[]")
        want[section] = {}
    elif line.startswith("; ") and line.endswith(" (not set)"):
        want[section][line[2:-len(" (not set)")]] = None
    elif " =" in line:
        k, v = line.split(" =", 1)
        want[section][k] = v.strip()
want["gate"]["downstream"] = None  # given as a flag above, not a default
default_re = re.compile(r"^; ([a-z_]+) =(.*)$")
seen, section, lines, errors = {}, None, [], []
for n, line in enumerate(open(path), 1):
    line = line.rstrip("\n")
    m = re.match(r"^\[([a-z]+)\]$", line)
    if m:
        section = m.group(1)
        if section not in want:
            errors.append(f"line {n}: unknown section [{section}]")
        seen.setdefault(section, {})
        lines.append(line)
        continue
    m = default_re.match(line)
    if not m:
        if line and not line.startswith("#"):
            errors.append(f"line {n}: neither a section, a '; key = default' nor a '#' comment: {line}")
        lines.append(line)
        continue
    key, rest = m.group(1), m.group(2)
    if section is None or key not in want.get(section, {}):
        errors.append(f"line {n}: [{section}] {key} is not a key of the binary")
        continue
    if key in seen[section]:
        errors.append(f"line {n}: [{section}] {key} given twice")
    seen[section][key] = rest
    comment = rest.split(" ;", 1)[1] if " ;" in rest else ""
    if not comment.strip():
        errors.append(f"line {n}: [{section}] {key} has no comment")
    if want[section][key] is None:
        if "(not set by default" not in comment:
            errors.append(f"line {n}: [{section}] {key} is not set by default: its comment must say so")
        lines.append(line)  # an example value, stays commented
    else:
        if "(not set by default" in comment:
            errors.append(f"line {n}: [{section}] {key} has a default, but its comment says not set")
        lines.append(key + " =" + rest)  # the default, made active
for s, keys in want.items():
    for k in keys:
        if k not in seen.get(s, {}):
            errors.append(f"[{s}] {k} is missing from the file")
if errors:
    sys.exit("\n".join(errors))
open(out, "w").write("\n".join(lines) + "\n")
print(sum(len(k) for k in want.values()), "keys")
EOF
}
NKEYS=$(check_keys "$DEFAULTS" "$INI" "$TMP/active.ini") ||
    fail "deploy/stormguard.ini and the binary's key table disagree"
ok "every key of the binary once, in its section, with a comment; no other key ($NKEYS)"

run sgx config -c "$TMP/active.ini" --db "$SG_DB" --downstream "$DOWN"
assert_rc 0 "the file with its defaults uncommented loads"
assert_eq "$DEFAULTS" "$OUT" "uncommented, it gives exactly the binary's defaults"

# the comparison can fail: one default off by one is seen
sed 's/^keep = 20 /keep = 21 /' "$TMP/active.ini" >"$TMP/off.ini"
grep -q '^keep = 21 ' "$TMP/off.ini" || fail "no 'keep = 20' line to change"
run sgx config -c "$TMP/off.ini" --db "$SG_DB" --downstream "$DOWN"
assert_rc 0 "a changed default loads"
assert_ne "$DEFAULTS" "$OUT" "a changed default is told apart"

finish
