// NcclHierarchicalAllreduce: intra-node NCCL reduce-scatter/allgather around an inter-node host allreduce.
#include "collectives/nccl/nccl_hierarchical.h"

#include "collectives/nccl/fusion_kernels.h"
#include "core/device/cuda/cuda_check.h"

namespace kolo {
NcclHierarchicalAllreduce::~NcclHierarchicalAllreduce() {
  try {
    local_.synchronize();
  } catch (const Error&) {
  }
  if (scratch_) cudaFree(scratch_);
  if (host_) cudaFreeHost(host_);
}

void NcclHierarchicalAllreduce::reserve(int64_t device_bytes, int64_t host_bytes) {
  if (device_bytes > scratch_bytes_) {
    local_.synchronize();
    if (scratch_) KOLO_CUDA_CHECK(cudaFree(scratch_));
    scratch_ = nullptr;
    KOLO_CUDA_CHECK(cudaSetDevice(local_.device()));
    KOLO_CUDA_CHECK(cudaMalloc(&scratch_, static_cast<size_t>(device_bytes)));
    scratch_bytes_ = device_bytes;
  }
  if (host_bytes > host_bytes_) {
    local_.synchronize();
    if (host_) KOLO_CUDA_CHECK(cudaFreeHost(host_));
    host_ = nullptr;
    KOLO_CUDA_CHECK(cudaMallocHost(&host_, static_cast<size_t>(host_bytes)));
    host_bytes_ = host_bytes;
  }
}

void NcclHierarchicalAllreduce::allreduce(const void* send, void* recv, int64_t count, DType dtype, ReduceOp op,
                                          Stream* compute) {
  KOLO_CHECK(count >= 0, "hierarchical allreduce: negative count ", count);
  const int ln = local_.size();
  const int64_t es = static_cast<int64_t>(dtype_size(dtype));
  const int64_t part = (count + ln - 1) / ln;
  const int64_t padded = part * ln;
  const int total_ranks = ln * cross_.size();
  reserve(std::max<int64_t>((padded + part) * es, 1), std::max<int64_t>(part * es, 1));
  uint8_t* pad = static_cast<uint8_t*>(scratch_);
  uint8_t* mine = pad + padded * es;
  // Even counts work on recv directly; uneven ones go through the padded copy.
  uint8_t* full = padded == count ? static_cast<uint8_t*>(recv) : pad;
  const ncclDataType_t type = nccl_type(dtype);
  // Average divides once at the end, after both levels.
  const ReduceOp summed = op == ReduceOp::Average ? ReduceOp::Sum : op;
  const ncclRedOp_t reduced = nccl_op(summed);

  cudaStream_t s = local_.begin("hierarchical_reducescatter", compute);
  if (full != send && count > 0)
    KOLO_CUDA_CHECK(cudaMemcpyAsync(full, send, static_cast<size_t>(count * es), cudaMemcpyDeviceToDevice, s));
  if (part > 0)
    KOLO_NCCL_CHECK(ncclReduceScatter(full, mine, static_cast<size_t>(part), type, reduced, local_.comm(), s));
  if (cross_.size() > 1 && part > 0) {
    KOLO_CUDA_CHECK(cudaMemcpyAsync(host_, mine, static_cast<size_t>(part * es), cudaMemcpyDeviceToHost, s));
    local_.end(nullptr);
    local_.synchronize();
    cross_.allreduce(host_, host_, part, dtype, summed, nullptr);
    s = local_.begin("hierarchical_allgather", nullptr);
    KOLO_CUDA_CHECK(cudaMemcpyAsync(mine, host_, static_cast<size_t>(part * es), cudaMemcpyHostToDevice, s));
  }
  if (part > 0) KOLO_NCCL_CHECK(ncclAllGather(mine, full, static_cast<size_t>(part), type, local_.comm(), s));
  if (full != recv && count > 0)
    KOLO_CUDA_CHECK(cudaMemcpyAsync(recv, full, static_cast<size_t>(count * es), cudaMemcpyDeviceToDevice, s));
  if (op == ReduceOp::Average && count > 0) {
    const bool floating = is_floating(dtype);
    nccl::launch_convert_segments({{recv, recv, count}}, dtype, dtype, floating ? 1.0 / total_ranks : 1.0,
                                  floating ? 1 : total_ranks, s);
  }
  local_.end(compute);
}

}  // namespace kolo
