#!/usr/bin/env bash
# Installs what stormguard's build, tests and demo need, from Debian's
# packages, when missing. Idempotent; run as root (or with sudo available).
#   scripts/setup.sh          build, test and demo dependencies
#   scripts/setup.sh --bench  also the benchmark tools
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libhiredis-dev libsqlite3-dev libjansson-dev libcmocka-dev
  libuv1-dev libh2o-dev libssl-dev libcurl4-openssl-dev libsystemd-dev
  redis-server redis-tools python3 curl sqlite3 openssl clang-format
  postgresql libpq-dev faketime
  clang gnuplot-nox chromium
  prometheus python3-yaml
)
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(time wrk nginx-light)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

run() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  echo "setup: installing $*"
  export DEBIAN_FRONTEND=noninteractive
  if ! run apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
    run apt-get update -qq
    run apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  fi
}
if ((${#missing[@]})); then
  apt_install "${missing[@]}"
fi
# The fuzz targets (tests/fuzz/run.sh) link clang's libFuzzer and sanitizer
# runtimes, which Debian's clang only recommends.
if [[ ! -f $(clang --print-runtime-dir)/libclang_rt.fuzzer-$(uname -m).a ]]; then
  apt_install "libclang-rt-$(clang -dumpversion | cut -d. -f1)-dev"
fi
