// Channels-last 2-D max pooling in kolo's own kernels: cuDNN's NHWC pooling backward took ~5x the time of a
// pass over its tensors (ResNet-50's stem pool, benchmarks/RESULTS.md). The forward keeps each output's argmax
// as a byte (its position in the kernel window, row-major), so the backward is a gather: every input element
// sums the output gradients of the windows that picked it, with no zero fill and no atomics.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/tensor/dtype.h"

namespace kolo::cuda {

struct MaxPoolNhwcShape {
  int64_t n, h, w, c, oh, ow;
  int kh, kw, sh, sw, ph, pw;
};

// Whether the kernels below take this case: f32/bf16/f16 and a window of at most 255 positions.
bool max_pool_nhwc_supported(DType t, const MaxPoolNhwcShape& s);

// y [n, oh, ow, c] = the maximum of each window (the first one in row-major window order; NaN wins, as the
// CPU kernel); argmax (may be null) [n, oh, ow, c] bytes = its window position.
void launch_max_pool_nhwc_forward(DType t, const MaxPoolNhwcShape& s, const void* x, void* y, uint8_t* argmax,
                                  cudaStream_t stream);

// dx [n, h, w, c] (overwritten) from dy [n, oh, ow, c] and the forward's argmax.
void launch_max_pool_nhwc_backward(DType t, const MaxPoolNhwcShape& s, const void* dy, const uint8_t* argmax,
                                   void* dx, cudaStream_t stream);

}  // namespace kolo::cuda
