#!/usr/bin/env bash
# One short device call: build, the GPU tests, then ResNet-50 and Transformer-big beside PyTorch eager in the
# same call, A/B runs of train_resnet's knobs and both kernel profiles, each step only while the call's time
# (LIMIT seconds, default 400) allows it. Usage on the device:
#   LIMIT=400 [STEPS="test resnet ..."] scripts/gpu_quick.sh ANCHORS_DIR (resnet_anchor.py, transformer_anchor.py)
# STEPS picks steps by tag (default: all, in the order below). Output is also appended to $OUT/gpu_quick.log when
# $OUT is set (the device tool returns it even after a timeout).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
anchors=${1:-.carry}
exec > >(tee -a "${OUT:-/tmp}/gpu_quick.log") 2>&1
export NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
LIMIT=${LIMIT:-400}
STEPS=${STEPS:-all}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; git log --oneline -1 2>/dev/null
t0=$SECONDS
left() { echo $((LIMIT - (SECONDS - t0))); }
# go SECONDS TAG DESCRIPTION: run the step when it is selected and SECONDS are left.
go() {
  [ "$STEPS" = all ] || [[ " $STEPS " == *" $2 "* ]] || return 1
  [ "$(left)" -gt "$1" ] || { echo "=== skipped (time): $3"; return 1; }
  echo "=== $3 at $((SECONDS - t0)) s"
}
timeout 60 cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 > /dev/null 2>&1
timeout 200 cmake --build build-gpu -j 16 2>&1 | grep -E "error|FAILED" | head -5
echo "built in $((SECONDS - t0)) s"
A="--model resnet50 --batch_size 256 --num_batches 50 --display_every 25 --device cuda --bf16"
R() { timeout 60 build-gpu/examples/train_resnet $A "$@" 2>&1 | grep -iE "^ *[0-9]+ |total|error|memory|graph" | tail -6; }
T="build-gpu/examples/train_transformer --model big --dropout 0.1 --dataset synthetic --vocab 32768 --min_len 63 --max_len 63 --tokens_per_rank 16384 --steps 40 --test_sentences 1 --display_every 20 --device cuda --bf16"
sed '/run(256, False, False)/d' "$anchors/resnet_anchor.py" > /tmp/ra.py
sed '/run(256, 64, False)/d' "$anchors/transformer_anchor.py" > /tmp/ta.py
go 60 test "ctest -L gpu" && timeout 100 ctest --test-dir build-gpu -L gpu --output-on-failure --timeout 90 2>&1 | grep -vE "^\s*$" | tail -25
go 30 bn_bench "bn_bench (ResNet-50's batch norm layers)" && timeout 40 build-gpu/benchmarks/gpu/bn_bench | tail -19
go 40 resnet "resnet default (graph)" && R
go 40 transformer "transformer" && timeout 60 $T 2>&1 | grep -iE "total|error|peak" | tail -3
go 50 torch_resnet "PyTorch resnet eager bf16" && timeout 60 /opt/torch/.venv/bin/python /tmp/ra.py 2>&1 | tail -2
go 50 torch_transformer "PyTorch transformer eager bf16" && timeout 60 /opt/torch/.venv/bin/python /tmp/ta.py 2>&1 | tail -2
go 35 resnet_eager "resnet --cuda_graph off" && R --cuda_graph off
go 35 resnet_hostwait "resnet --cuda_graph off, KOLO_DEVICE_WAIT=0 (host waits for the exchange)" && KOLO_DEVICE_WAIT=0 R --cuda_graph off
go 35 resnet_nogemm "resnet KOLO_CONV_GEMM=off (pointwise convolutions on cuDNN only)" && KOLO_CONV_GEMM=off R
go 35 profile_transformer "transformer profile" && KOLO_PROFILE_KERNELS=2 timeout 50 $T 2>&1 | grep -A24 "device ms"
go 30 profile_resnet "resnet profile --cuda_graph off" && KOLO_PROFILE_KERNELS=3 timeout 45 build-gpu/examples/train_resnet $A --cuda_graph off 2>&1 | grep -A22 "device ms"
go 30 conv_choices "pointwise convolution choices" && KOLO_LOG_LEVEL=debug timeout 40 build-gpu/examples/train_resnet $A --num_batches 2 2>&1 | grep -E "GEMM [0-9.]+ ms" | sed -E 's/^.*(conv2d[^:]*): /\1 /' | head -40
sed -e '/run(256, False, False)/d' -e '/^run(256, True, True)$/d' "$anchors/resnet_anchor.py" > /tmp/rc.py
go 150 torch_compile "PyTorch resnet torch.compile bf16 (the 1.1x goal's peer)" && timeout 240 /opt/torch/.venv/bin/python /tmp/rc.py --compile 2>&1 | tail -1
echo "=== done at $((SECONDS - t0)) s"
