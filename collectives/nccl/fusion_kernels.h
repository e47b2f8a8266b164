// Launchers of the NCCL fusion kernels: batched pack/unpack between tensors and the device fusion buffer,
// with the scale (prescale on pack; postscale and Average's 1/size on unpack), integer Average's division
// and f16/bf16 wire compression folded into the one copy, so fusion costs one launch per direction.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "core/tensor/dtype.h"

namespace kolo::nccl {

// One contiguous run of `count` elements copied from `src` (dtype `src_dtype`) to `dst` (`dst_dtype`).
struct CopySegment {
  const void* src;
  void* dst;
  int64_t count;
};

// dst[i] = convert(src[i] * scale) / int_divisor for every segment. Floating data is scaled in float
// (double for f64); integers ignore `scale` (it must be 1) and are divided by `int_divisor` (truncating,
// like the CPU backend). Segments may alias only when src == dst and the dtypes are equal (in place).
void launch_convert_segments(const std::vector<CopySegment>& segments, DType src_dtype, DType dst_dtype,
                             double scale, int64_t int_divisor, cudaStream_t stream);

}  // namespace kolo::nccl
