#!/usr/bin/env bash
# Fails when a C source or header drifts from .clang-format (Debian's
# clang-format 14); lists the files and how to fix them.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "check-format: clang-format not found (scripts/setup.sh installs it)" >&2; exit 1; }
drift=()
while IFS= read -r f; do
    clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || drift+=("$f")
done < <(git ls-files '*.c' '*.h')
if ((${#drift[@]})); then
    echo "check-format: ${#drift[@]} files drift from .clang-format: ${drift[*]}" >&2
    echo "check-format: fix with: clang-format -i ${drift[*]}" >&2
    exit 1
fi
echo "check-format: $(git ls-files '*.c' '*.h' | wc -l) files match .clang-format"
