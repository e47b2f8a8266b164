#!/usr/bin/env bash
# README's test command: install dependencies, build, run the whole ctest suite (CPU + multi-rank MPI;
# GPU-labelled tests skip themselves without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh "$@"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ctest --test-dir "${KOLO_BUILD_DIR:-build}" --output-on-failure -j "${KOLO_TEST_JOBS:-2}" --timeout 600
