#!/usr/bin/env bash
# Runs the kolo and PyTorch CPU conv/matmul/attention benchmarks alternately (kolo, torch, kolo, torch, ...) with the same
# thread count, so that load from other processes hits both sides alike, then prints the best time of each
# side per row as a markdown table (compare.py).
# Usage: benchmarks/cpu/run.sh BUILD_DIR [THREADS] [ROUNDS]   (from the repository root)
# CASES: an extended regular expression; only the shapes.txt lines matching it run (e.g. CASES='^attn').
# TORCH_BLAS_DIR: as in run_models.sh, a folder with another libblas.so.3 for the PyTorch process only (Debian's
#   torch sends f32 GEMMs, hence matmul and attention, to the libblas.so.3 alternative).
set -euo pipefail
build=${1:?build dir}
export OMP_NUM_THREADS=${2:-$(nproc)}
rounds=${3:-2}
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
shapes=$here/shapes.txt
if [ -n "${CASES:-}" ]; then
  grep -E "$CASES" "$here/shapes.txt" > "$out/shapes.txt" || true
  shapes=$out/shapes.txt
fi
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$rounds"); do
  "$build/benchmarks/cpu/conv_matmul_bench" "$shapes" > "$out/kolo.$r"
  LD_LIBRARY_PATH=${TORCH_BLAS_DIR:+$TORCH_BLAS_DIR:}${LD_LIBRARY_PATH:-} \
    /usr/bin/python3 "$here/torch_conv_matmul.py" "$shapes" > "$out/torch.$r"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "threads=$OMP_NUM_THREADS rounds=$rounds torch=$(/usr/bin/python3 -c 'import torch; print(torch.__version__)')" \
     "torch blas: ${TORCH_BLAS_DIR:-system libblas.so.3}"
/usr/bin/python3 "$here/compare.py" "$out"/kolo.* -- "$out"/torch.*
rm -rf "$out"
