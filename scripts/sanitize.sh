#!/usr/bin/env bash
# Sanitizer runs. `asan` (default): ASan+UBSan build of everything, then the unit and multi-rank tests.
# `tsan`: ThreadSanitizer build, then the collectives tests (background thread vs user threads).
# Open MPI's own allocations are not ours: leak checking is off under mpirun, and the suppression files in
# scripts/sanitizers/ name only MPI/OpenMP runtime frames.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mode=${1:-asan}
here=$(pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
case "$mode" in
  asan)
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKOLO_SANITIZE=ON -DKOLO_WITH_CUDA=OFF \
      -DKOLO_BUILD_BENCHMARKS=OFF >/dev/null
    cmake --build build-asan -j "$(nproc)"
    export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    ctest --test-dir build-asan --output-on-failure -j 2 -LE "gpu|package|slow"
    ;;
  tsan)
    cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKOLO_WITH_CUDA=OFF -DKOLO_BUILD_BENCHMARKS=OFF \
      -DCMAKE_CXX_FLAGS="-fsanitize=thread -fno-omit-frame-pointer" \
      -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread >/dev/null
    cmake --build build-tsan -j "$(nproc)"
    export TSAN_OPTIONS="suppressions=$here/scripts/sanitizers/tsan.supp halt_on_error=1 report_signal_unsafe=0"
    ctest --test-dir build-tsan --output-on-failure -j 1 -R "collectives"
    ;;
  *)
    echo "usage: $0 [asan|tsan]" >&2
    exit 2
    ;;
esac
