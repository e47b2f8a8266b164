#!/usr/bin/env bash
# Sanitizer runs (see docs/reliability.md for what they found and how long they take).
# `asan` (default): ASan+UBSan build of everything into build-asan, then the unit and multi-rank tests.
# `tsan`: ThreadSanitizer build into build-tsan, then the collectives, distributed-optimizer and fault
# tests (the background thread vs user threads and callbacks).
# Open MPI's own allocations are not ours: leak checking is off, and scripts/sanitizers/tsan.supp names only
# MPI/OpenMP runtime frames. SANITIZE_JOBS sets build parallelism, SANITIZE_TEST_JOBS the ctest one.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mode=${1:-asan}
here=$(pwd)
jobs=${SANITIZE_JOBS:-$(nproc)}
test_jobs=${SANITIZE_TEST_JOBS:-2}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
case "$mode" in
  asan)
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKOLO_SANITIZE=ON -DKOLO_WITH_CUDA=OFF \
      -DKOLO_BUILD_BENCHMARKS=OFF >/dev/null
    cmake --build build-asan -j "$jobs"
    export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    # The fork()-and-SIGKILL checkpoint test does not get its child writing under ASan (docs/reliability.md).
    export GTEST_FILTER=${KOLO_ASAN_GTEST_FILTER:--Checkpoint.SigkillDuringSaveLeavesThePreviousCheckpoint}
    ctest --test-dir build-asan --output-on-failure -j "$test_jobs" -LE "gpu|package|slow" --timeout 600
    ;;
  tsan)
    cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKOLO_WITH_CUDA=OFF -DKOLO_BUILD_BENCHMARKS=OFF \
      -DCMAKE_CXX_FLAGS="-fsanitize=thread -fno-omit-frame-pointer" \
      -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread >/dev/null
    cmake --build build-tsan -j "$jobs" --target kolo_collectives_unit_test kolo_collectives_mpi_test \
      kolo_collectives_dead_rank_test test_distributed_optimizer kolo_fault_train test_nonfinite_distributed
    export TSAN_OPTIONS="suppressions=$here/scripts/sanitizers/tsan.supp halt_on_error=1 report_signal_unsafe=0"
    ctest --test-dir build-tsan --output-on-failure -j "$test_jobs" -R "collectives|distributed|reliability_fault"
    ;;
  *)
    echo "usage: $0 [asan|tsan]" >&2
    exit 2
    ;;
esac
