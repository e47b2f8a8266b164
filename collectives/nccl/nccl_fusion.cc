// NcclFusion: pack → ncclAllReduce → unpack on the communication stream, ordered by events.
#include "collectives/nccl/nccl_fusion.h"

#include <algorithm>

#include "collectives/nccl/fusion_kernels.h"
#include "core/device/cuda/cuda_check.h"

namespace kolo {
namespace {

// Tensor offsets in the fusion buffer: 256 B keeps every tensor on its own cache lines and NCCL's
// vector loads aligned.
constexpr int64_t kFusionAlignment = 256;

// Up to this many separate memory runs are reduced where they lie (one NCCL group); more go through the
// fusion buffer, whose one large allreduce beats many small ones.
constexpr size_t kMaxInPlaceRuns = 8;

}  // namespace

NcclFusion::~NcclFusion() {
  if (buffer_free_) cudaEventDestroy(buffer_free_);
  if (!buffer_) return;
  // The communication stream may still read the buffer; wait before freeing (errors are moot here).
  try {
    backend_.synchronize();
  } catch (const Error&) {
  }
  cudaFree(buffer_);
}

void* NcclFusion::buffer(int64_t bytes) {
  if (bytes <= capacity_) return buffer_;
  if (buffer_) {
    backend_.synchronize();
    KOLO_CUDA_CHECK(cudaFree(buffer_));
    buffer_ = nullptr;
    capacity_ = 0;
  }
  KOLO_CUDA_CHECK(cudaSetDevice(backend_.device()));
  KOLO_CUDA_CHECK(cudaMalloc(&buffer_, static_cast<size_t>(bytes)));
  capacity_ = bytes;
  return buffer_;
}

void NcclFusion::allreduce(const std::vector<DeviceSpan>& spans, const FusedAllreduceSpec& spec, Stream* compute,
                           NcclHierarchicalAllreduce* hierarchical) {
  const bool floating = is_floating(spec.dtype);
  KOLO_CHECK(spec.wire == spec.dtype || (floating && is_floating(spec.wire)), "nccl fused allreduce: cannot send ",
             dtype_name(spec.dtype), " as ", dtype_name(spec.wire));
  KOLO_CHECK(floating || (spec.prescale == 1.0 && spec.postscale == 1.0), "nccl fused allreduce: ",
             dtype_name(spec.dtype), " tensors cannot be scaled (prescale ", spec.prescale, ", postscale ",
             spec.postscale, ")");
  const int n = backend_.size();
  const bool int_average = spec.op == ReduceOp::Average && !is_floating(spec.wire);
  const int64_t divisor = int_average ? n : 1;
  const int64_t ws = static_cast<int64_t>(dtype_size(spec.wire));
  const ncclRedOp_t op = int_average ? ncclSum : nccl_op(spec.op);  // integers divide on unpack
  const ncclDataType_t type = nccl_type(spec.wire);

  if (!hierarchical && spec.wire == spec.dtype) {
    // Gradient slots of one flat buffer form a single run whatever order they became ready in, so they need
    // no packing at all.
    std::vector<nccl::CopySegment> direct;
    for (const DeviceSpan& d : direct_reductions(spans, spec.where_they_lie, kMaxInPlaceRuns))
      direct.push_back({d.in, d.out, d.count});
    if (!direct.empty()) {
      int64_t bytes = 0;
      for (const nccl::CopySegment& r : direct) bytes += r.count * ws;
      cudaStream_t s = backend_.begin("allreduce", compute, bytes);
      if (spec.prescale != 1.0) {
        // Scaled into the output, which is then reduced in place.
        nccl::launch_convert_segments(direct, spec.dtype, spec.dtype, spec.prescale, 1, s);
        for (nccl::CopySegment& r : direct) r.src = r.dst;
      }
      // A group only when there are several runs: its start/end cost a small collective ~1 us of host time.
      if (direct.size() > 1) KOLO_NCCL_CHECK(ncclGroupStart());
      for (const nccl::CopySegment& r : direct)
        KOLO_NCCL_CHECK(ncclAllReduce(r.src, r.dst, static_cast<size_t>(r.count), type, op, backend_.comm(), s));
      if (direct.size() > 1) KOLO_NCCL_CHECK(ncclGroupEnd());
      if (spec.postscale != 1.0 || divisor != 1) {
        std::vector<nccl::CopySegment> results;  // scaled where the reduction wrote them
        for (const nccl::CopySegment& r : direct) results.push_back({r.dst, r.dst, r.count});
        nccl::launch_convert_segments(results, spec.dtype, spec.dtype, spec.postscale, divisor, s);
      }
      backend_.end(compute);
      return;
    }
  }

  const int64_t align = kFusionAlignment / ws;
  std::vector<int64_t> offset(spans.size());
  int64_t total = 0;
  for (size_t i = 0; i < spans.size(); ++i) {
    KOLO_CHECK(spans[i].count >= 0, "nccl fused allreduce: tensor ", i, " has a negative count");
    offset[i] = total;
    total += (spans[i].count + align - 1) / align * align;
  }
  uint8_t* buf = static_cast<uint8_t*>(buffer(std::max<int64_t>(total * ws, 1)));
  std::vector<nccl::CopySegment> pack, unpack;
  pack.reserve(spans.size());
  unpack.reserve(spans.size());
  for (size_t i = 0; i < spans.size(); ++i) {
    pack.push_back({spans[i].in, buf + offset[i] * ws, spans[i].count});
    unpack.push_back({buf + offset[i] * ws, spans[i].out, spans[i].count});
  }
  // The buffer's previous user may run on another of the backend's streams: wait until it is done with it.
  if (buffer_free_) backend_.await_next(buffer_free_);
  cudaStream_t s = backend_.begin("fused_allreduce", compute, hierarchical ? INT64_MAX : total * ws);
  nccl::launch_convert_segments(pack, spec.dtype, spec.wire, spec.prescale, 1, s);
  if (hierarchical) {
    backend_.end(nullptr);
    backend_.await_next(backend_.last_done());
    hierarchical->allreduce(buf, buf, total, spec.wire, spec.op, nullptr);
    backend_.await_next(backend_.last_done());
    s = backend_.begin("fused_unpack", nullptr);
    nccl::launch_convert_segments(unpack, spec.wire, spec.dtype, spec.postscale, 1, s);
  } else {
    KOLO_NCCL_CHECK(ncclAllReduce(buf, buf, static_cast<size_t>(total), type, op, backend_.comm(), s));
    nccl::launch_convert_segments(unpack, spec.wire, spec.dtype, spec.postscale, divisor, s);
  }
  if (!buffer_free_) KOLO_CUDA_CHECK(cudaEventCreateWithFlags(&buffer_free_, cudaEventDisableTiming));
  KOLO_CUDA_CHECK(cudaEventRecord(buffer_free_, s));
  backend_.end(compute);
}

}  // namespace kolo
