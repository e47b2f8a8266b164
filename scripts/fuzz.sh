#!/usr/bin/env bash
# Builds kolo with clang + ASan/UBSan + libFuzzer into build-fuzz and runs fuzz targets for a bounded time
# each (FUZZ_SECONDS, default 60) on a copy of their corpus. Usage: scripts/fuzz.sh [target ...] where a
# target is a tests/fuzz/fuzz_<target>.cc name (default: all). A crash is copied into
# tests/fuzz/corpus/<target>/ so the fuzz_replay_<target> ctest entry keeps it fixed; the script then
# exits non-zero. See docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_BUILD_JOBS:-$(nproc)}
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKOLO_FUZZ=ON \
  -DKOLO_SANITIZE=ON -DKOLO_WITH_CUDA=OFF -DKOLO_BUILD_BENCHMARKS=OFF >/dev/null
if [ $# -gt 0 ]; then
  names="$*"
else
  names=$(cd tests/fuzz && ls fuzz_*.cc | sed 's/^fuzz_//; s/\.cc$//')
fi
targets=$(for n in $names; do echo "fuzz_$n"; done)
cmake --build build-fuzz -j "$jobs" --target $targets
export ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
for name in $names; do
  work=build-fuzz/fuzz-corpus/$name
  artifacts=build-fuzz/fuzz-artifacts/$name
  mkdir -p "$work" "$artifacts"
  cp -n tests/fuzz/corpus/$name/* "$work"/ 2>/dev/null || true
  echo "== fuzz_$name for ${seconds}s"
  if ! (cd build-fuzz && "./tests/fuzz/fuzz_$name" -max_total_time="$seconds" -max_len=65536 \
          -artifact_prefix="fuzz-artifacts/$name/" "fuzz-corpus/$name"); then
    status=1
  fi
  for crash in "$artifacts"/crash-* "$artifacts"/timeout-* "$artifacts"/oom-*; do
    [ -e "$crash" ] || continue
    mkdir -p tests/fuzz/corpus/$name
    mv "$crash" tests/fuzz/corpus/$name/
    echo "== fuzz_$name: saved $(basename "$crash") as a regression input in tests/fuzz/corpus/$name/"
  done
done
exit $status
