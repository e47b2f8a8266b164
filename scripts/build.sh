#!/usr/bin/env bash
# Configures and builds kolo into ${KOLO_BUILD_DIR:-build} (Release). CUDA code is compiled when nvcc is
# found (also without a GPU, so that it cannot rot); CUDA_HOME defaults to /usr/local/cuda.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
build_dir=${KOLO_BUILD_DIR:-build}
export PATH="${CUDA_HOME:-/usr/local/cuda}/bin:$PATH"
jobs=${KOLO_JOBS:-$(nproc)}
generator=()
if command -v ninja >/dev/null 2>&1; then
  generator=(-G Ninja)
fi
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "$@"
fi
cmake --build "$build_dir" -j "$jobs"
