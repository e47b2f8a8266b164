#!/usr/bin/env bash
# A/B of training throughput between source trees in one call on a GPU machine: differences of a few percent
# are only visible against the run-to-run spread when the trees run interleaved on the same machine.
#
#   here:    scripts/gpu_ab.sh pack DIR REV [REV...]      git archive of each revision into DIR/REV.tar
#   device:  scripts/gpu_ab.sh run DIR MODEL NPS REPS TREE [TREE...]
#            MODEL resnet | transformer (scripts/gpu_session.sh's commands), NPS e.g. 1,2, TREE a packed REV
#            or "head" (this checkout). Builds every tree in parallel (Ninja, sm_90), then for each repetition
#            and rank count runs the trees one after another and prints their "total .../sec" lines.
# Extra environment for the runs goes in KOLO_AB_ENV (e.g. "KOLO_DEVICE_WAIT=1").
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
mode=${1:-}
case "$mode" in
  pack)
    dir=${2:?usage: gpu_ab.sh pack DIR REV...}
    shift 2
    mkdir -p "$dir"
    for rev in "$@"; do git archive -o "$dir/$rev.tar" "$rev" || exit 1; done
    exit 0 ;;
  run) ;;
  *) echo "usage: gpu_ab.sh pack DIR REV... | run DIR MODEL NPS REPS TREE..." >&2; exit 2 ;;
esac
dir=${2:?} model=${3:?} nps=${4:?} reps=${5:?}
shift 5
trees=("$@")
export NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
t0=$SECONDS
jobs=$(( $(nproc) / ${#trees[@]} ))
for t in "${trees[@]}"; do
  (
    src=.
    if [ "$t" != head ]; then
      src=/tmp/kolo-ab-src-$t
      mkdir -p "$src" && tar -xf "$dir/$t.tar" -C "$src" || exit 1
    fi
    cmake -S "$src" -B "/tmp/kolo-ab-$t" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
      >"/tmp/kolo-ab-$t.log" 2>&1 &&
      timeout 400 cmake --build "/tmp/kolo-ab-$t" -j "$jobs" --target kolorun "train_$model" >>"/tmp/kolo-ab-$t.log" 2>&1
    echo "gpu_ab: built $t (exit $?) at $((SECONDS - t0)) s"
  ) &
done
wait
run_one() {
  local b=/tmp/kolo-ab-$1 np=$2
  if [ "$model" = resnet ]; then
    set -- "$b/examples/train_resnet" --model resnet50 --batch_size 256 --num_batches 100 --display_every 50 \
      --device cuda --bf16
  else
    set -- "$b/examples/train_transformer" --model big --dropout 0.1 --dataset synthetic --vocab 32768 \
      --min_len 63 --max_len 63 --tokens_per_rank 16384 --steps 60 --test_sentences 1 --display_every 30 \
      --device cuda --bf16 --sparse_as_dense
  fi
  # shellcheck disable=SC2086  # KOLO_AB_ENV is a list of NAME=VALUE words
  timeout 150 env ${KOLO_AB_ENV:-} "$b/launch/kolorun" -np "$np" "$@" 2>&1 | grep "^total" || echo "(failed)"
}
for rep in $(seq "$reps"); do
  for np in ${nps//,/ }; do
    for t in "${trees[@]}"; do
      echo "gpu_ab: $model np=$np rep=$rep tree=$t: $(run_one "$t" "$np")"
    done
  done
done
echo "gpu_ab: done at $((SECONDS - t0)) s"
