#!/usr/bin/env bash
# Runs the kolo and PyTorch CPU conv/matmul benchmarks alternately (kolo, torch, kolo, torch, ...) with the same
# thread count, so that load from other processes hits both sides alike, then prints the best time of each
# side per row as a markdown table (compare.py).
# Usage: benchmarks/cpu/run.sh BUILD_DIR [THREADS] [ROUNDS]   (from the repository root)
set -euo pipefail
build=${1:?build dir}
export OMP_NUM_THREADS=${2:-$(nproc)}
rounds=${3:-2}
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
for r in $(seq "$rounds"); do
  "$build/benchmarks/cpu/conv_matmul_bench" "$here/shapes.txt" > "$out/kolo.$r"
  /usr/bin/python3 "$here/torch_conv_matmul.py" "$here/shapes.txt" > "$out/torch.$r"
done
echo "threads=$OMP_NUM_THREADS rounds=$rounds torch=$(/usr/bin/python3 -c 'import torch; print(torch.__version__)')"
/usr/bin/python3 "$here/compare.py" "$out"/kolo.* -- "$out"/torch.*
rm -rf "$out"
