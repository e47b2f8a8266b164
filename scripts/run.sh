#!/usr/bin/env bash
# README's main job: install dependencies and build (scripts/build.sh), then a real multi-rank data-parallel
# training run: 2 CPU ranks under mpirun with MPI allreduce, training a small-stem ResNet-18 on
# scikit-learn's real digits set (1,500 training / 297 held-out images), printing tf_cnn_benchmarks-style
# images/sec lines, `total images/sec` and the held-out accuracy. About 1-2 minutes on 2 CPU cores.
# Where kolo was built with NCCL and GPUs are visible, the same training runs with one rank per GPU on the
# GPUs (gradients allreduced by NCCL, bf16 weights with f32 master copies) instead.
# Extra arguments are passed to train_resnet (e.g. --num_epochs 5).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
build_dir=${KOLO_BUILD_DIR:-build}
exe="$build_dir/examples/train_resnet"
[ -x "$exe" ] || { echo "run.sh: $exe was not built" >&2; exit 1; }

if [ "$(id -u)" = 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
cache="$build_dir/CMakeCache.txt"

run_ranks() {  # run_ranks NP ARGS...: NP ranks under mpirun (one process without MPI)
  local np=$1
  shift
  if grep -q '^KOLO_WITH_MPI:BOOL=ON' "$cache" && command -v mpirun >/dev/null 2>&1; then
    timeout 900 mpirun -np "$np" --oversubscribe --bind-to none "$exe" "$@"
  else
    echo "run.sh: built without MPI; training on one rank" >&2
    timeout 900 "$exe" "$@"
  fi
}

train=(--model resnet18 --small_stem --dataset digits --batch_size 32 --optimizer sgd --momentum 0.9
       --weight_decay 1e-3 --lr 0.4 --lr_schedule cosine --warmup_epochs 1 --display_every 50
       --target_accuracy 0.97)
gpus=0
if grep -q '^KOLO_WITH_NCCL:BOOL=ON' "$cache" && command -v nvidia-smi >/dev/null 2>&1; then
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
fi
if [ "$gpus" -gt 0 ]; then
  echo "== train_resnet: $gpus GPU rank(s), NCCL, digits"
  # NVLink multicast stays off (the shared GPU machines require it).
  NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0} run_ranks "$gpus" "${train[@]}" --device cuda --bf16 --num_epochs 20 "$@"
else
  echo "== train_resnet: 2 CPU ranks, digits"
  # One thread per rank: the 2 ranks then use 2 cores without oversubscribing them.
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} run_ranks 2 "${train[@]}" --device cpu --width 16 --num_epochs 20 "$@"
fi
