// Batched pack/unpack kernels for the NCCL fusion buffer: blockIdx.y picks a segment from a by-value table,
// blocks stride over its elements, so a group of many small gradients costs one launch, not one per tensor.
#include "collectives/nccl/fusion_kernels.h"

#include <algorithm>
#include <type_traits>

#include "core/device/cuda/cuda_check.h"
#include "core/ops/cuda/cuda_dtype.cuh"

namespace kolo::nccl {
namespace {

// Segments per launch: the table travels as a kernel parameter (24 bytes each, well under the 4 KiB limit).
constexpr int kMaxSegments = 128;
constexpr int kThreads = 256;

struct SegmentTable {
  CopySegment seg[kMaxSegments];
};

template <typename S, typename D>
__global__ void convert_segments_kernel(SegmentTable table, double scale, int64_t int_divisor) {
  const CopySegment s = table.seg[blockIdx.y];
  const S* src = static_cast<const S*>(s.src);
  D* dst = static_cast<D*>(s.dst);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < s.count; i += stride) {
    if constexpr (std::is_integral_v<S>) {
      dst[i] = cuda::convert<D>(static_cast<S>(src[i] / static_cast<S>(int_divisor)));
    } else {
      using A = cuda::Acc<S>;
      const A v = cuda::convert<A>(src[i]) * static_cast<A>(scale);
      dst[i] = cuda::convert<D>(v);
    }
  }
}

template <typename S, typename D>
void launch_typed(const std::vector<CopySegment>& segments, double scale, int64_t int_divisor, cudaStream_t stream) {
  for (size_t first = 0; first < segments.size(); first += kMaxSegments) {
    SegmentTable table{};
    const size_t n = std::min<size_t>(kMaxSegments, segments.size() - first);
    int64_t longest = 0;
    for (size_t i = 0; i < n; ++i) {
      table.seg[i] = segments[first + i];
      longest = std::max(longest, table.seg[i].count);
    }
    if (longest == 0) continue;
    // Enough blocks per segment to cover the longest one, capped so the whole grid fills the GPU a few times.
    const int per_segment = std::max(1, cuda::grid_for(longest, kThreads) / static_cast<int>(std::min<size_t>(n, 8)));
    convert_segments_kernel<S, D><<<dim3(per_segment, static_cast<unsigned>(n)), kThreads, 0, stream>>>(
        table, scale, int_divisor);
    KOLO_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

void launch_convert_segments(const std::vector<CopySegment>& segments, DType src_dtype, DType dst_dtype,
                             double scale, int64_t int_divisor, cudaStream_t stream) {
  KOLO_CHECK(int_divisor >= 1, "nccl fusion: integer divisor must be >= 1, got ", int_divisor);
  const bool src_int = !is_floating(src_dtype);
  KOLO_CHECK(!src_int || (scale == 1.0 && src_dtype == dst_dtype), "nccl fusion: ", dtype_name(src_dtype),
             " data can only be copied (scale ", scale, ", to ", dtype_name(dst_dtype), ")");
  KOLO_CHECK(src_int || int_divisor == 1, "nccl fusion: integer divisor on ", dtype_name(src_dtype), " data");
  if (segments.empty()) return;
  KOLO_CHECK(src_int || is_floating(dst_dtype), "nccl fusion: cannot convert ", dtype_name(src_dtype), " to ",
             dtype_name(dst_dtype));
  // A few plain copies are cheaper as copy-engine memcpys than as a kernel launch.
  if (src_dtype == dst_dtype && scale == 1.0 && int_divisor == 1 && segments.size() <= 4) {
    for (const CopySegment& s : segments)
      if (s.src != s.dst && s.count > 0)
        KOLO_CUDA_CHECK(cudaMemcpyAsync(s.dst, s.src, static_cast<size_t>(s.count) * dtype_size(src_dtype),
                                        cudaMemcpyDeviceToDevice, stream));
    return;
  }
  cuda::dispatch_device_dtype(src_dtype, [&](auto s) {
    using S = decltype(s);
    cuda::dispatch_device_dtype(dst_dtype, [&](auto d) {
      using D = decltype(d);
      if constexpr (std::is_integral_v<S> != std::is_integral_v<D> ||
                    (std::is_integral_v<S> && !std::is_same_v<S, D>)) {
        KOLO_FAIL("nccl fusion: cannot convert ", dtype_name(src_dtype), " to ", dtype_name(dst_dtype));
      } else {
        launch_typed<S, D>(segments, scale, int_divisor, stream);
      }
    });
  });
}

}  // namespace kolo::nccl
