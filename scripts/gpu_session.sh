#!/usr/bin/env bash
# One bounded pass of GPU checks and measurements, for a lent GPU machine with a time budget (the device tool's
# 10-minute calls): build with Ninja for sm_90, run the `gpu` tests, then kolo and the PyTorch anchors in the
# same call. Every step has its own timeout and prints as it goes; a failed step is reported and the next runs.
#
#   scripts/gpu_session.sh STEP[,STEP...] [anchors dir], steps run in the order given:
#     build  configure + build into $KOLO_GPU_BUILD (default /tmp/kolo-gpu); ~65 s on 16 cores
#     test   ctest -L gpu (the NCCL np2 tests skip themselves on one GPU)
#     bench  resnet_bench 256 bf16 nhwc (eager and as a CUDA graph), train_resnet, gpu_kernels_bench,
#            attention_bench, the Transformer-big step profile, and, with an anchors dir holding
#            resnet_anchor.py / transformer_anchor.py, PyTorch eager on the same device right after
#     nccl   2+ GPUs: kolo_allreduce_bench --device cuda, one rank per GPU (raw NCCL beside kolo in the same binary),
#            then kolo_controller_bench --device cuda (the controller path's cost per tensor, and per spaced enqueue)
#     resnet2, transformer2
#            2+ GPUs: ResNet-50 / Transformer-big weak scaling 1 -> 2 (-> 4 -> 8, as many as are visible) GPUs
#            through scripts/scaling_study.py
#            (CSV, .gp, PNG if gnuplot is there, into $KOLO_GPU_OUT), then with an anchors dir PyTorch DDP
#            (ddp_anchor.py / transformer_ddp.py) at the same GPU counts
#     timelines 2+ GPUs: 20-step runs of each model at 1 and 2 GPUs with KOLO_TIMELINE into $KOLO_GPU_OUT
#     threshold 2+ GPUs: both models at 2 GPUs under several KOLO_FUSION_THRESHOLD values, 1-GPU references
#     hier   2+ GPUs: hierarchical allreduce over fake nodes of half the GPUs (the sweep, then ResNet-50 on every
#            GPU with and without it)
#     cta    2+ GPUs: both models at 2 GPUs under NCCL's CTA policies (default, efficiency: fewer CTAs taken
#            from the backward pass's kernels), alternated, with 1-GPU references
#     memory PyTorch's peak memory for the bf16 ResNet-50 / Transformer-big steps alone
#     all    all of the above in order
# Results go to stdout; save them into benchmarks/RESULTS.md with the machine and date.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
what=${1:-all}
anchors=${2:-}
build=${KOLO_GPU_BUILD:-/tmp/kolo-gpu}
out=${KOLO_GPU_OUT:-/tmp/kolo-gpu-out}
python=${TORCH_PYTHON:-/opt/torch/.venv/bin/python}
# NVLink multicast stays off everywhere (the device notes: it can take a shared host's GPUs out of service).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
status=0

# step <seconds> <label> <command...>: runs one bounded step and reports its time and exit status.
step() {
  local limit=$1 label=$2 t0=$SECONDS rc
  shift 2
  echo "=== $label"
  timeout "$limit" "$@"
  rc=$?
  echo "=== $label: exit $rc after $((SECONDS - t0)) s"
  [ "$rc" -eq 0 ] || status=1
  return 0
}

gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
echo "gpu_session: $what, $gpus GPU(s), build $build, $(date -u '+%F %T') UTC"
if [ "$gpus" -eq 0 ]; then
  echo "gpu_session: no GPU visible (nvidia-smi -L lists none); nothing to do" >&2
  exit 2
fi

do_build() {
  step 120 "configure" cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90
  step 400 "build" cmake --build "$build" -j "$(nproc)"
}

do_test() {
  step 240 "ctest -L gpu" ctest --test-dir "$build" -L gpu --output-on-failure --timeout 300
}

do_bench() {
  step 200 "kolo resnet_bench 256 bf16 nhwc" "$build/benchmarks/gpu/resnet_bench" 256 bf16 nhwc 20
  step 200 "kolo resnet_bench 256 bf16 nhwc, the step as a CUDA graph" "$build/benchmarks/gpu/resnet_bench" 256 bf16 \
    nhwc 20 graph
  step 200 "kolo train_resnet resnet50 b256 bf16 (the training program: masters, the step replayed as a CUDA graph)" \
    "$build/examples/train_resnet" --model resnet50 --batch_size 256 --num_batches 60 --device cuda --bf16
  step 200 "kolo train_resnet resnet50 b256 bf16 --cuda_graph off (eager, DistributedOptimizer at one rank)" \
    "$build/examples/train_resnet" --model resnet50 --batch_size 256 --num_batches 60 --device cuda --bf16 --cuda_graph off
  step 100 "kolo_controller_bench --device cuda, 1 rank, with hooks 100 us apart behind a busy GPU" \
    mpirun -np 1 --bind-to none "$build/benchmarks/allreduce/kolo_controller_bench" --device cuda --gap_us 100 \
    --busy_gib 60
  step 100 "kolo gpu_kernels_bench (memory-bound kernels in GB/s)" "$build/benchmarks/gpu/gpu_kernels_bench"
  step 100 "kolo attention_bench (tile, GEMM and fused paths at Transformer-big shapes)" \
    "$build/benchmarks/gpu/attention_bench"
  step 300 "kolo train_transformer big 256x64 bf16 (profile of the last 2 steps)" \
    env KOLO_PROFILE_KERNELS=2 "$build/examples/train_transformer" --device cuda --model big --dropout 0.1 \
    --dataset synthetic --vocab 32768 --min_len 63 --max_len 63 --tokens_per_rank 16384 --steps 20 \
    --test_sentences 1 --display_every 5 --bf16
  if [ -n "$anchors" ]; then
    step 300 "PyTorch resnet_anchor.py" "$python" "$anchors/resnet_anchor.py"
    step 300 "PyTorch transformer_anchor.py" "$python" "$anchors/transformer_anchor.py"
  fi
}

need_gpus() {
  if [ "$gpus" -lt 2 ]; then
    echo "gpu_session: $1 needs 2 GPUs, this machine has $gpus; skipped"
    return 1
  fi
}

do_nccl() {
  need_gpus nccl || return 0
  step 300 "kolo_allreduce_bench --device cuda ($gpus ranks)" \
    mpirun -np "$gpus" --bind-to none -x NCCL_NVLS_ENABLE "$build/benchmarks/allreduce/kolo_allreduce_bench" --device cuda
  step 100 "kolo_controller_bench --device cuda ($gpus ranks; hooks 100 us apart behind a busy GPU)" \
    mpirun -np "$gpus" --bind-to none -x NCCL_NVLS_ENABLE "$build/benchmarks/allreduce/kolo_controller_bench" --device cuda \
    --gap_us 100 --busy_gib 60
}

# Rank counts of the weak-scaling sweeps: powers of two up to the visible GPUs (1,2 / 1,2,4 / 1,2,4,8).
rank_list() {
  local n=1 list=1
  while [ $((n * 2)) -le "$gpus" ]; do
    n=$((n * 2))
    list="$list,$n"
  done
  echo "$list"
}

# torchrun through the anchors' Python, one DDP anchor at every rank count of the sweeps.
ddp_pair() {
  local script=$1 np
  [ -n "$anchors" ] || return 0
  for np in $(rank_list | tr , ' '); do
    step 200 "PyTorch DDP $script, $np GPU(s)" "$python" -m torch.distributed.run --nproc_per_node "$np" "$anchors/$script"
  done
}

# The two models' training commands: $1 ranks, $2 steps, $3 per-GPU batch (images / tokens; the goals use
# 256 / 16384 = 256x64), then extra flags. The sweeps pass scaling_study.py's {ranks} and {batch}.
# ResNet-50 runs eagerly at every rank count: its CUDA-graph step applies at one rank only (~6% faster there,
# session 11), and a weak-scaling ratio must compare the same step; `bench` reports the graph figure.
resnet_cmd() {
  local np=$1 steps=$2 batch=$3
  shift 3
  echo "$build/launch/kolorun -np $np $build/examples/train_resnet --model resnet50 --batch_size $batch \
    --num_batches $steps --display_every 20 --device cuda --bf16 --cuda_graph off $*"
}

transformer_cmd() {
  local np=$1 steps=$2 batch=$3
  shift 3
  echo "$build/launch/kolorun -np $np $build/examples/train_transformer --model big --dropout 0.1 \
    --dataset synthetic --vocab 32768 --min_len 63 --max_len 63 --tokens_per_rank $batch --steps $steps \
    --test_sentences 1 --display_every 10 --device cuda --bf16 $*"
}

do_resnet2() {
  need_gpus resnet2 || return 0
  mkdir -p "$out"
  step 500 "kolo ResNet-50 b256/GPU bf16 weak scaling over $(rank_list) GPUs, median of 3 runs each" \
    python3 scripts/scaling_study.py sweep --mode weak --ranks "$(rank_list)" --batch 256 --name resnet50_weak_gpu --repeat 3 \
    --timeout 140 --out "$out" --command "$(resnet_cmd '{ranks}' 100 '{batch}')"
  ddp_pair ddp_anchor.py
}

# The embedding gradient sparse_as_dense (allreduced, as DDP does) and, for the seed's comparison, kept
# sparse (allgathered rows; the tied embedding's dense part makes that every row of every rank).
do_transformer2() {
  need_gpus transformer2 || return 0
  mkdir -p "$out"
  step 400 "kolo Transformer-big 256x64 tokens/GPU bf16 sparse_as_dense, weak scaling over $(rank_list) GPUs, median of 3" \
    python3 scripts/scaling_study.py sweep --mode weak --ranks "$(rank_list)" --batch 16384 --metric tokens \
    --name transformer_big_weak_gpu --repeat 3 --timeout 140 --out "$out" \
    --command "$(transformer_cmd '{ranks}' 60 '{batch}' --sparse_as_dense)"
  step 200 "kolo Transformer-big 2 GPUs, embedding gradient allgathered (no sparse_as_dense)" \
    bash -c "$(transformer_cmd 2 40 16384)"
  ddp_pair transformer_ddp.py
}

# KOLO_TIMELINE runs of each model at 1 and 2 GPUs (20 steps): the step's device phases side by side, plus the
# Transformer at 2 GPUs with NCCL held to 4 channels (fewer SMs taken from the backward pass's kernels).
do_timelines() {
  need_gpus timelines || return 0
  mkdir -p "$out"
  local np
  for np in 1 2; do
    step 200 "kolo ResNet-50 $np GPU(s), 20 steps with KOLO_TIMELINE" \
      env KOLO_TIMELINE="$out/timeline_resnet50_${np}gpu.json" bash -c "$(resnet_cmd "$np" 20 256)"
    step 200 "kolo Transformer-big sparse_as_dense $np GPU(s), 20 steps with KOLO_TIMELINE" \
      env KOLO_TIMELINE="$out/timeline_transformer_big_${np}gpu.json" \
      bash -c "$(transformer_cmd "$np" 20 16384 --sparse_as_dense)"
  done
  step 200 "kolo Transformer-big sparse_as_dense 2 GPUs, NCCL_MAX_NCHANNELS=4, with KOLO_TIMELINE" \
    env NCCL_MAX_NCHANNELS=4 KOLO_TIMELINE="$out/timeline_transformer_big_2gpu_4ch.json" \
    bash -c "$(transformer_cmd 2 20 16384 --sparse_as_dense)"
}

# KOLO_FUSION_THRESHOLD at 2 GPUs beside the 1-GPU runs: smaller groups start their allreduce earlier in the
# backward pass (each waits for its last gradient), larger ones make fewer calls.
do_threshold() {
  need_gpus threshold || return 0
  local mib
  step 120 "kolo Transformer-big 1 GPU, reference" bash -c "$(transformer_cmd 1 30 16384 --sparse_as_dense)"
  for mib in 16 32 64 128; do
    step 120 "kolo Transformer-big 2 GPUs, KOLO_FUSION_THRESHOLD=${mib} MiB" \
      env KOLO_FUSION_THRESHOLD=$((mib << 20)) bash -c "$(transformer_cmd 2 30 16384 --sparse_as_dense)"
  done
  step 120 "kolo ResNet-50 1 GPU, reference" bash -c "$(resnet_cmd 1 40 256)"
  for mib in 32 128; do
    step 120 "kolo ResNet-50 2 GPUs, KOLO_FUSION_THRESHOLD=${mib} MiB" \
      env KOLO_FUSION_THRESHOLD=$((mib << 20)) bash -c "$(resnet_cmd 2 40 256)"
  done
}

# NCCL_CTA_POLICY (NCCL >= 2.27) at 2 GPUs: the efficiency policy runs collectives on the fewest CTAs that keep
# their speed, leaving more SMs to the backward pass they overlap. Two alternated rounds per policy.
do_cta() {
  need_gpus cta || return 0
  local round policy
  step 120 "kolo Transformer-big 1 GPU, reference" bash -c "$(transformer_cmd 1 40 16384 --sparse_as_dense)"
  step 120 "kolo ResNet-50 1 GPU, reference" bash -c "$(resnet_cmd 1 60 256)"
  for round in 1 2; do
    for policy in 0 1; do
      step 120 "kolo Transformer-big 2 GPUs, NCCL_CTA_POLICY=$policy (round $round)" \
        env NCCL_CTA_POLICY=$policy bash -c "$(transformer_cmd 2 40 16384 --sparse_as_dense)"
      step 120 "kolo ResNet-50 2 GPUs, NCCL_CTA_POLICY=$policy (round $round)" \
        env NCCL_CTA_POLICY=$policy bash -c "$(resnet_cmd 2 60 256)"
    done
  done
}

# Hierarchical allreduce (NCCL reduce-scatter in the node, MPI across nodes through pinned host memory, NCCL
# allgather) on one host, with every $gpus/2 consecutive ranks declared a node: the sweep's Runtime columns and
# the fused ResNet-50 rows take that path; then ResNet-50 on every GPU with it and without it.
do_hier() {
  need_gpus hier || return 0
  local node=$((gpus / 2))
  step 300 "kolo_allreduce_bench --device cuda ($gpus ranks), KOLO_HIERARCHICAL_ALLREDUCE=1, fake nodes of $node GPU(s)" \
    env KOLO_HIERARCHICAL_ALLREDUCE=1 KOLO_FAKE_LOCAL_SIZE=$node mpirun -np "$gpus" --bind-to none -x NCCL_NVLS_ENABLE \
    -x KOLO_HIERARCHICAL_ALLREDUCE -x KOLO_FAKE_LOCAL_SIZE "$build/benchmarks/allreduce/kolo_allreduce_bench" --device cuda
  step 200 "kolo ResNet-50 b256 bf16 $gpus GPUs, hierarchical over fake nodes of $node" \
    env KOLO_HIERARCHICAL_ALLREDUCE=1 KOLO_FAKE_LOCAL_SIZE=$node bash -c "$(resnet_cmd "$gpus" 60 256)"
  step 200 "kolo ResNet-50 b256 bf16 $gpus GPUs, flat (reference)" bash -c "$(resnet_cmd "$gpus" 60 256)"
}

# PyTorch's peak memory for the bf16 workloads alone (benchmarks/gpu/torch_peak_memory.py).
do_memory() {
  step 200 "PyTorch peak memory, ResNet-50" "$python" benchmarks/gpu/torch_peak_memory.py resnet
  step 200 "PyTorch peak memory, Transformer-big" "$python" benchmarks/gpu/torch_peak_memory.py transformer
}

for w in ${what//,/ }; do
  case "$w" in
    build) do_build ;;
    test) do_test ;;
    bench) do_bench ;;
    nccl) do_nccl ;;
    resnet2) do_resnet2 ;;
    transformer2) do_transformer2 ;;
    timelines) do_timelines ;;
    threshold) do_threshold ;;
    cta) do_cta ;;
    hier) do_hier ;;
    memory) do_memory ;;
    all) do_build; do_test; do_bench; do_nccl; do_resnet2; do_transformer2; do_timelines ;;
    *) echo "gpu_session: unknown step '$w' (build|test|bench|nccl|resnet2|transformer2|timelines|threshold|cta|hier|memory|all)" >&2; exit 2 ;;
  esac
done
echo "gpu_session: done, status $status"
exit "$status"
