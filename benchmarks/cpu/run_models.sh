#!/usr/bin/env bash
# Times full ResNet-50 and Transformer-big CPU training steps with kolo (model_step_bench) and PyTorch
# (model_step_torch.py) alternately — kolo, torch, kolo, torch — with the same thread count, so that load from
# other processes on a shared machine hits both sides alike; prints the best median of each side per model,
# their ratio (kolo speed / torch speed), and the load average before and after.
# Usage: benchmarks/cpu/run_models.sh BUILD_DIR [THREADS] [ROUNDS] [MODELS]   (from the repository root)
#   MODELS: space-separated subset of "resnet50 resnet50_nchw transformer_big" (default "resnet50 transformer_big";
#   resnet50 runs both sides channels_last, the fast CPU layout of each; resnet50_nchw runs both sides NCHW)
# TORCH_BLAS_DIR: a folder holding another libblas.so.3 (e.g. OpenBLAS unpacked with dpkg -x) put first on the
#   PyTorch process's LD_LIBRARY_PATH only: Debian's python3-torch calls the libblas.so.3 alternative for f32
#   GEMMs, which is the unoptimised reference BLAS unless OpenBLAS is installed.
set -euo pipefail
build=${1:?build dir}
export OMP_NUM_THREADS=${2:-$(nproc)}
rounds=${3:-2}
models=${4:-resnet50 transformer_big}
warmup=${WARMUP:-2}
steps=${STEPS:-4}
here=$(cd "$(dirname "$0")" && pwd)
if [ -n "${LOGDIR:-}" ]; then
  out=$LOGDIR; mkdir -p "$out"
else
  out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
fi
args() {
  case $1 in
    resnet50) echo "--model resnet50 --batch 16 --channels_last --warmup $warmup --steps $steps" ;;
    resnet50_nchw) echo "--model resnet50 --batch 16 --warmup $warmup --steps $steps" ;;
    transformer_big) echo "--model transformer_big --batch 16 --seq 32 --warmup $warmup --steps $steps" ;;
    *) echo "unknown model $1" >&2; exit 2 ;;
  esac
}
echo "date=$(date -u +%F) host=$(hostname) cpus=$(nproc) threads=$OMP_NUM_THREADS rounds=$rounds" \
     "torch=$(/usr/bin/python3 -c 'import torch; print(torch.__version__)')"
echo "torch blas: ${TORCH_BLAS_DIR:-system libblas.so.3 ($(readlink -f /lib/x86_64-linux-gnu/libblas.so.3))}"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for m in $models; do
  for r in $(seq "$rounds"); do
    # shellcheck disable=SC2046
    "$build/benchmarks/cpu/model_step_bench" $(args "$m") > "$out/kolo.$m.$r"
    # shellcheck disable=SC2046
    LD_LIBRARY_PATH=${TORCH_BLAS_DIR:+$TORCH_BLAS_DIR:}${LD_LIBRARY_PATH:-} \
      /usr/bin/python3 "$here/model_step_torch.py" $(args "$m") > "$out/torch.$m.$r"
    echo "$m round $r: kolo $(grep '^total' "$out/kolo.$m.$r") | torch $(grep '^total' "$out/torch.$m.$r")" \
         "| load $(cut -d' ' -f1 /proc/loadavg)"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| model | unit | kolo median | torch median | ratio | kolo best step | torch best step | ratio |" \
     "kolo cpu s/step | torch cpu s/step | ratio |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for m in $models; do
  # Highest figure over rounds of the "<prefix> ...: X" line; for CPU seconds the lowest.
  hi() { grep -h "^$2" "$out/$1.$m".* | sed 's/.*: \([0-9.]*\).*/\1/' | sort -g | tail -1; }
  lo() { grep -h "^$2" "$out/$1.$m".* | sed 's/.*: \([0-9.]*\).*/\1/' | sort -g | head -1; }
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
  k=$(hi kolo total); t=$(hi torch total); kb=$(hi kolo best); tb=$(hi torch best)
  kc=$(lo kolo cpu); tc=$(lo torch cpu)
  unit=$(grep -h '^total' "$out/kolo.$m.1" | sed 's/^total \(.*\): .*/\1/')
  echo "| $m | $unit | $k | $t | $(ratio "$k" "$t") | $kb | $tb | $(ratio "$kb" "$tb") | $kc | $tc | $(ratio "$tc" "$kc") |"
done
