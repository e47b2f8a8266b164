#!/usr/bin/env bash
# Builds kolo with clang + ASan/UBSan + libFuzzer into build-fuzz and runs each fuzz target for a bounded
# time (FUZZ_SECONDS, default 60) on a copy of its corpus. A crash leaves crash-* files in build-fuzz/;
# copy them into tests/fuzz/corpus/<target>/ so the replay tests keep them fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
seconds=${FUZZ_SECONDS:-60}
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKOLO_FUZZ=ON \
  -DKOLO_SANITIZE=ON -DKOLO_WITH_CUDA=OFF -DKOLO_BUILD_BENCHMARKS=OFF >/dev/null
targets=$(cd tests/fuzz && ls fuzz_*.cc | sed 's/\.cc$//')
cmake --build build-fuzz -j "$(nproc)" --target $targets
status=0
for t in $targets; do
  name=${t#fuzz_}
  work=build-fuzz/fuzz-corpus/$name
  mkdir -p "$work"
  cp -n tests/fuzz/corpus/$name/* "$work"/ 2>/dev/null || true
  echo "== $t for ${seconds}s"
  if ! (cd build-fuzz && "./tests/fuzz/$t" -max_total_time="$seconds" -max_len=65536 "fuzz-corpus/$name"); then
    status=1
  fi
done
exit $status
