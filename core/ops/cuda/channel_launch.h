// Launchers of the per-channel kernels (channel.cu) that back cuDNN where it has no entry point: batch norm in
// eval mode (forward from running statistics, backward with constant statistics) and bias gradients. An
// activation is viewed as [outer, c, inner] (NCHW: outer = n, inner = h*w; NHWC: outer = n*h*w, inner = 1).
// Statistics/accumulators are f32 (f64 for f64 data). Launchers take the stream last and do not synchronise.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/tensor/dtype.h"

namespace kolo::cuda {

struct ChannelView {
  int64_t outer, c, inner;
};

// sum_dy[c] = sum of dy; when x is given, sum_dyxhat[c] = sum of dy * (x - mean[c]) * invstd[c].
void launch_channel_sums(DType t, const ChannelView& v, const void* dy, const void* x, const void* mean,
                         const void* invstd, void* sum_dy, void* sum_dyxhat, cudaStream_t stream);

// save_mean = running_mean, save_invstd = 1 / sqrt(running_var + eps) (running stats of dtype `rt`).
void launch_bn_stats_from_running(DType rt, const void* rmean, const void* rvar, double eps, int64_t c,
                                  DType stat_t, void* save_mean, void* save_invstd, cudaStream_t stream);

// y = (x - mean) * invstd * w + b per channel (w, b in x's dtype, null = 1 / 0).
void launch_bn_apply(DType t, const ChannelView& v, const void* x, const void* w, const void* b, const void* mean,
                     const void* invstd, void* y, cudaStream_t stream);

// dx = dy * w * invstd (statistics constant: eval mode).
void launch_bn_eval_dx(DType t, const ChannelView& v, const void* dy, const void* w, const void* invstd, void* dx,
                       cudaStream_t stream);

// out[c] = convert(acc[c]) from the accumulator dtype to `t`.
void launch_channel_store(DType t, const void* acc, int64_t c, void* out, cudaStream_t stream);

// dst[c] = convert(src[c]) between two floating dtypes.
void launch_channel_convert(DType dst_t, void* dst, DType src_t, const void* src, int64_t c, cudaStream_t stream);

}  // namespace kolo::cuda
