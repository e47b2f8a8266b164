#!/usr/bin/env bash
# Runs the kolo and PyTorch CPU conv/matmul benchmarks back to back with the same thread count.
# Usage: benchmarks/cpu/run.sh BUILD_DIR [THREADS]   (from the repository root)
set -euo pipefail
build=${1:?build dir}
export OMP_NUM_THREADS=${2:-$(nproc)}
here=$(cd "$(dirname "$0")" && pwd)
echo "== kolo (OMP_NUM_THREADS=$OMP_NUM_THREADS)"
"$build/benchmarks/cpu/conv_matmul_bench" "$here/shapes.txt"
echo "== PyTorch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)') (threads=$OMP_NUM_THREADS)"
/usr/bin/python3 "$here/torch_conv_matmul.py" "$here/shapes.txt"
