#!/usr/bin/env bash
# The whole test suite: the release build (every label), then the unit and
# simulation tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

echo "== release build: all tests =="
ctest --test-dir build --output-on-failure -j2 --timeout 600

echo "== sanitizer build (ASan+UBSan): unit and simulation tests =="
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPATINA_ASAN=ON -DPATINA_UBSAN=ON \
  -DPATINA_BUILD_BENCH=OFF -DCMAKE_CXX_FLAGS="-O1"
targets=$(cmake --build build-asan --target help | sed -n 's/^\([a-z_]*_tests\): .*/\1/p' | grep -v '^integration_tests$' | tr '\n' ' ')
cmake --build build-asan -j2 --target $targets
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan -L 'unit|sim' --output-on-failure -j2 --timeout 900

echo "== fuzz build (clang-14 + libFuzzer): every decoder of untrusted bytes, fuzzed for a bounded time =="
if ! command -v clang++-14 > /dev/null || [ ! -e /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a ]; then
  echo "clang-14 or libfuzzer-14-dev is missing (scripts/setup.sh installs both)" >&2
  exit 1
fi
CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPATINA_FUZZ=ON \
  -DPATINA_BUILD_BENCH=OFF
cmake --build build-fuzz -j2
ctest --test-dir build-fuzz -L fuzz --output-on-failure -j2 --timeout 300
