#!/usr/bin/env bash
# Installs what stormguard's build, tests and demo need, from Debian's
# packages, when missing. Idempotent; run as root (or with sudo available).
#   scripts/setup.sh          build, test and demo dependencies
#   scripts/setup.sh --bench  also the benchmark tools
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libhiredis-dev libsqlite3-dev libjansson-dev libcmocka-dev
  libuv1-dev libh2o-dev libssl-dev libcurl4-openssl-dev
  redis-server redis-tools python3 curl sqlite3 openssl clang-format
)
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(time wrk nginx-light)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

run() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! run apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
  run apt-get update -qq
  run apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
