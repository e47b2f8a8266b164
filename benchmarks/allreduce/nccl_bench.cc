// The --device cuda mode of kolo_allreduce_bench: kolo's NCCL path (NcclBackend + NcclFusion: event ordering
// with the compute stream, error polling, fusion kernels) against raw ncclAllReduce on a communicator of its
// own, in the same process and run, as nccl-tests columns; then ResNet-50's 161 gradients fused by kolo vs
// one raw allreduce of the same bytes. The controller path — kolo::Runtime::allreduce_async on device tensors
// (negotiation, response cache, fusion, NCCL, handle completion), each call waited for — is timed beside
// them. Time per call is the median of 3 timed blocks, all ranks in step: calls issued back to back (as
// nccl-tests time them), and, as latency, each call followed by a host wait for its stream before the next.
#include <mpi.h>
#include <nccl.h>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <vector>

#include "collectives/backend_factory.h"
#include "collectives/nccl/nccl_fusion.h"
#include "collectives/runtime.h"
#include "core/device/cuda/cuda_check.h"
#include "core/device/cuda/cuda_stream.h"

namespace kolo::bench {
namespace {

int iters_for(size_t bytes) { return bytes >= (16u << 20) ? 20 : bytes >= (1u << 20) ? 50 : 200; }

// `f` enqueues one call; `sync` waits for everything enqueued.
template <typename F, typename S>
double time_per_call(int iters, F&& f, S&& sync) {
  for (int i = 0; i < 5; ++i) f();
  sync();
  std::vector<double> t;
  for (int rep = 0; rep < 3; ++rep) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = MPI_Wtime();
    for (int i = 0; i < iters; ++i) f();
    sync();
    double dt = (MPI_Wtime() - t0) / iters;
    MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    t.push_back(dt);
  }
  std::sort(t.begin(), t.end());
  return t[1];
}

float* device_ones(int64_t count) {
  std::vector<float> h(static_cast<size_t>(std::max<int64_t>(count, 1)), 1.0f);
  float* d = nullptr;
  KOLO_CUDA_CHECK(cudaMalloc(&d, h.size() * sizeof(float)));
  KOLO_CUDA_CHECK(cudaMemcpy(d, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice));
  return d;
}

}  // namespace

int run_cuda_allreduce_bench(size_t max_bytes, const std::vector<int64_t>& resnet50_sizes) {
  Config cfg = Config::from_env();
  Backends host = make_backends(cfg);
  DeviceBackends dev = make_device_backends(host);
  const int rank = host.world->rank(), size = host.world->size();
  if (dev.name == "none") {
    if (rank == 0) std::printf("# kolo_allreduce_bench --device cuda: no NCCL device backend (no GPU, or built without NCCL)\n");
    return 1;
  }
  auto& nccl = static_cast<NcclBackend&>(*dev.world);
  NcclFusion fusion(nccl);
  CudaStream& compute = current_cuda_stream(dev.device);

  // The raw baseline: its own communicator and stream, nothing of kolo in the loop.
  ncclUniqueId id{};
  if (rank == 0) KOLO_NCCL_CHECK(ncclGetUniqueId(&id));
  MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD);
  ncclComm_t raw = nullptr;
  KOLO_NCCL_CHECK(ncclCommInitRank(&raw, size, id, rank));
  cudaStream_t raw_stream = nullptr;
  KOLO_CUDA_CHECK(cudaStreamCreateWithFlags(&raw_stream, cudaStreamNonBlocking));
  auto raw_sync = [&] { KOLO_CUDA_CHECK(cudaStreamSynchronize(raw_stream)); };
  // Every kolo collective ends in an event the compute stream waits on (or ran on it), so a wait for the
  // compute stream covers it, as cudaStreamSynchronize covers the raw baseline; poll() then recycles the
  // done events and raises any NCCL error.
  auto kolo_sync = [&] {
    compute.synchronize();
    nccl.poll();
  };
  // The controller path: its handles complete once the device work finished, so there is nothing to sync.
  Runtime rt(cfg);
  const Device gpu = Device::cuda(dev.device);
  auto no_sync = [] {};

  const double bus = 2.0 * (size - 1) / size;
  if (rank == 0) {
    std::printf("# kolo_allreduce_bench --device cuda: %d ranks, NCCL %d, device %d of rank 0, in place, float sum\n",
                size, NCCL_VERSION_CODE, dev.device);
    std::printf("#                                      raw ncclAllReduce              kolo NcclBackend + fusion"
                "                kolo::Runtime (controller)     latency: call + wait\n");
    std::printf("# %12s %12s %6s %10s %8s %8s %10s %8s %8s %8s %10s %8s %8s %9s %9s %8s\n", "size(B)", "count",
                "type", "time(us)", "algbw", "busbw", "time(us)", "algbw", "busbw", "kolo/raw", "time(us)", "busbw",
                "rt/raw", "raw(us)", "kolo(us)", "kolo/raw");
  }
  for (size_t bytes = 16; bytes <= max_bytes; bytes *= 4) {
    const int64_t count = static_cast<int64_t>(bytes / sizeof(float));
    float* a = device_ones(count);
    float* b = device_ones(count);
    const int iters = iters_for(bytes);
    const double traw = time_per_call(iters, [&] {
      KOLO_NCCL_CHECK(ncclAllReduce(a, a, static_cast<size_t>(count), ncclFloat32, ncclSum, raw, raw_stream));
    }, raw_sync);
    const double tk = time_per_call(iters, [&] {
      fusion.allreduce({{b, b, count}}, {DType::F32, DType::F32, ReduceOp::Sum}, &compute);
    }, kolo_sync);
    Tensor t = Tensor::ones({count}, DType::F32, gpu);
    const double trt = time_per_call(iters, [&] { rt.allreduce_async(t, "bench.sweep").wait(); }, no_sync);
    const double lraw = time_per_call(iters, [&] {
      KOLO_NCCL_CHECK(ncclAllReduce(a, a, static_cast<size_t>(count), ncclFloat32, ncclSum, raw, raw_stream));
      raw_sync();
    }, no_sync);
    const double lk = time_per_call(iters, [&] {
      fusion.allreduce({{b, b, count}}, {DType::F32, DType::F32, ReduceOp::Sum}, &compute);
      kolo_sync();
    }, no_sync);
    if (rank == 0)
      std::printf("  %12zu %12lld %6s %10.1f %8.2f %8.2f %10.1f %8.2f %8.2f %8.2f %10.1f %8.2f %8.2f %9.1f %9.1f %8.2f\n",
                  bytes, static_cast<long long>(count), "float", traw * 1e6, bytes / traw / 1e9,
                  bytes / traw / 1e9 * bus, tk * 1e6, bytes / tk / 1e9, bytes / tk / 1e9 * bus, traw / tk, trt * 1e6,
                  bytes / trt / 1e9 * bus, traw / trt, lraw * 1e6, lk * 1e6, lraw / lk);
    KOLO_CUDA_CHECK(cudaFree(a));
    KOLO_CUDA_CHECK(cudaFree(b));
  }

  // ResNet-50's gradients: 161 tensors fused into one collective vs one raw allreduce of the same bytes.
  const int64_t total = std::accumulate(resnet50_sizes.begin(), resnet50_sizes.end(), int64_t{0});
  std::vector<float*> grads;
  std::vector<DeviceSpan> spans;
  for (int64_t n : resnet50_sizes) {
    grads.push_back(device_ones(n));
    spans.push_back({grads.back(), grads.back(), n});
  }
  float* flat = device_ones(total);
  const double tfused = time_per_call(20, [&] {
    fusion.allreduce(spans, {DType::F32, DType::F32, ReduceOp::Average}, &compute);
  }, kolo_sync);
  const double traw = time_per_call(20, [&] {
    KOLO_NCCL_CHECK(ncclAllReduce(flat, flat, static_cast<size_t>(total), ncclFloat32, ncclAvg, raw, raw_stream));
  }, raw_sync);
  // The same gradients as device tensors through the runtime: enqueued one by one, as backward would,
  // negotiated, fused under KOLO_FUSION_THRESHOLD and waited for together.
  std::vector<Tensor> tensors;
  std::vector<std::string> names;
  for (size_t k = 0; k < resnet50_sizes.size(); ++k) {
    tensors.push_back(Tensor::ones({resnet50_sizes[k]}, DType::F32, gpu));
    names.push_back("resnet50.grad." + std::to_string(k));
  }
  AllreduceOptions avg;
  avg.op = ReduceOp::Average;
  const double truntime = time_per_call(20, [&] {
    std::vector<Handle> hs;
    for (size_t k = 0; k < tensors.size(); ++k) hs.push_back(rt.allreduce_async(tensors[k], names[k], avg));
    wait_all(hs);
  }, no_sync);
  // As the DistributedOptimizer holds them: slices of one flat gradient buffer, enqueued in backward's
  // (reverse) order. Fused groups of adjacent slices are reduced in place, with no pack or unpack.
  Tensor flat_grads = Tensor::ones({total}, DType::F32, gpu);
  std::vector<Tensor> slots;
  std::vector<DeviceSpan> slot_spans;
  int64_t off = 0;
  for (int64_t n : resnet50_sizes) {
    slots.push_back(flat_grads.slice(0, off, off + n));
    off += n;
  }
  std::reverse(slots.begin(), slots.end());
  for (const Tensor& t : slots) slot_spans.push_back({t.data_ptr(), t.data_ptr(), t.numel()});
  const double tslots = time_per_call(20, [&] {
    fusion.allreduce(slot_spans, {DType::F32, DType::F32, ReduceOp::Average}, &compute);
  }, kolo_sync);
  const double truntime_slots = time_per_call(20, [&] {
    std::vector<Handle> hs;
    for (size_t k = 0; k < slots.size(); ++k) hs.push_back(rt.allreduce_async(slots[k], names[k], avg));
    wait_all(hs);
  }, no_sync);
  if (rank == 0) {
    const double mb = total * 4.0;
    std::printf("\n# ResNet-50 gradients on GPU: %zu tensors, %lld floats (%.1f MB), Average\n", resnet50_sizes.size(),
                static_cast<long long>(total), mb / 1e6);
    std::printf("  kolo fused %zu tensors   %10.1f us  busbw %6.2f GB/s\n", resnet50_sizes.size(), tfused * 1e6,
                mb / tfused / 1e9 * bus);
    std::printf("  raw ncclAllReduce flat  %10.1f us  busbw %6.2f GB/s\n", traw * 1e6, mb / traw / 1e9 * bus);
    std::printf("  fused / raw             %10.3f x   (goal <= 1.15)\n", tfused / traw);
    std::printf("  kolo::Runtime (161 ops) %10.1f us  busbw %6.2f GB/s\n", truntime * 1e6, mb / truntime / 1e9 * bus);
    std::printf("  runtime / raw           %10.3f x\n", truntime / traw);
    std::printf("  as slices of one flat buffer (the DistributedOptimizer's gradient slots), in backward order:\n");
    std::printf("  kolo fused 161 slots     %10.1f us  busbw %6.2f GB/s  %6.3f x raw (goal <= 1.15)\n", tslots * 1e6,
                mb / tslots / 1e9 * bus, tslots / traw);
    std::printf("  kolo::Runtime (161 slots)%10.1f us  busbw %6.2f GB/s  %6.3f x raw\n", truntime_slots * 1e6,
                mb / truntime_slots / 1e9 * bus, truntime_slots / traw);
  }
  for (float* g : grads) KOLO_CUDA_CHECK(cudaFree(g));
  KOLO_CUDA_CHECK(cudaFree(flat));
  KOLO_CUDA_CHECK(cudaStreamDestroy(raw_stream));
  ncclCommDestroy(raw);
  rt.shutdown();
  return 0;
}

}  // namespace kolo::bench
