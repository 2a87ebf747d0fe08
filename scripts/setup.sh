#!/usr/bin/env bash
# Installs every Debian 12 package Patina needs (idempotent, non-interactive)
# and builds the release tree into build/. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build pkg-config git
  libboost1.81-all-dev liburing-dev
  libngtcp2-dev libngtcp2-crypto-gnutls-dev libgnutls28-dev
  libsqlite3-dev sqlite3 libzstd-dev libmimalloc-dev serf iproute2
  libspdlog-dev libfmt-dev libtomlplusplus-dev libcli11-dev libexpected-dev
  libgtest-dev libgmock-dev libbenchmark-dev librapidcheck-dev
  strace procps curl python3 python3-websockets
  clang-14 libfuzzer-14-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j2
