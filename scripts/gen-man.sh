#!/usr/bin/env bash
# Writes stormguard(1) in roff from the binary's own help: `stormguard --help`
# for the list of commands and `stormguard CMD --help` for each command's
# usage, flags and examples (the CLI's option tables). So the page cannot
# say other than --help does.
#   scripts/gen-man.sh BINARY OUT
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: scripts/gen-man.sh BINARY OUT" >&2; exit 2; }
bin=$1 out=$2
[ -x "$bin" ] || { echo "gen-man: $bin is not an executable" >&2; exit 2; }

# roff: a backslash is \e; a line starting with . or ' would be a request
esc() { sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"; }

commands=$("$bin" --help | awk '/^commands:/ {on = 1; next} on && /^  [a-z]/ {print $1} on && /^$/ {on = 0}')
[ -n "$commands" ] || { echo "gen-man: $bin --help lists no commands" >&2; exit 1; }
version=$("$bin" version | head -1)
tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp"' EXIT
{
    printf '.TH STORMGUARD 1 "" "%s" "User Commands"\n' "$version"
    printf '.SH NAME\nstormguard \\- keep a CI poller'"'"'s Redis cache from turning into a pipeline storm\n'
    printf '.SH SYNOPSIS\n.B stormguard\n.I command\n[\\fIoptions\\fR]\n'
    printf '.SH DESCRIPTION\n'
    "$bin" --help | awk '/^commands:/ {exit} NR > 2' | esc
    printf '.SH COMMANDS\n'
    "$bin" --help | awk '/^commands:/ {on = 1; next} on && /^  [a-z]/' | while read -r name what; do
        printf '.TP\n.B %s\n%s\n' "$name" "$(printf '%s\n' "$what" | esc)"
    done
    for c in $commands; do
        printf '.SH "STORMGUARD %s"\n.nf\n' "$(echo "$c" | tr a-z A-Z)"
        "$bin" "$c" --help | esc
        printf '.fi\n'
    done
    printf '.SH EXIT STATUS\n0 ok, 1 runtime failure, 2 usage or configuration error, 3 refused by a safety rule.\n'
    printf '.SH FILES\n.TP\n/etc/stormguard/stormguard.ini\nthe configuration the systemd unit gives (-c FILE)\n'
    printf '.TP\n/var/lib/stormguard/stormguard.db\nthe store (SQLite): snapshots, the journal, the ledger, the held queue\n'
    printf '.SH SEE ALSO\nThe README, docs/runbook.md and deploy/ of the source.\n'
} >"$tmp"
chmod 644 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
