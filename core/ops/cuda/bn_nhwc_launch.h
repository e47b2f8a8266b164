// Training-mode batch norm over channels-last activations viewed as [rows, c] (rows = n*h*w), in kolo's own
// kernels: cuDNN's legacy NHWC batch-norm path measured ~40x slower than a bandwidth-bound pass on an H100
// (benchmarks/RESULTS.md). Forward = one statistics pass (per-thread shifted sums, merged in a fixed order: the
// result is deterministic) + one apply pass; backward = one pass for the per-channel sums of dy and dy*(x-mean)
// + one dx pass. Statistics and the per-channel coefficients are f32; data is f32, bf16 or f16.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "core/tensor/dtype.h"

namespace kolo::cuda {

struct BnNhwcShape {
  int64_t rows, c;
};

// One batch norm's affine parameters (dtype of w/b; null: 1/0) and running statistics (null: not tracked).
struct BnNhwcParams {
  DType dtype;
  const void *w, *b;
  void *running_mean, *running_var;
};

// Scratch bytes the launchers need for `s` (the caller provides them, e.g. from the caching allocator).
size_t bn_nhwc_workspace_bytes(const BnNhwcShape& s);
size_t bn_nhwc_dual_workspace_bytes(const BnNhwcShape& s);  // the dual launchers'

// y = bn(x) = (x - mean) * invstd * w + b with the batch statistics, then + residual (may be null) and ReLU
// when `relu`; each step rounded to t as the unfused ops would. `param_t` is the dtype of w/b (null: 1/0),
// `running_t` of running_mean/running_var (null: not tracked; updated with `momentum`, unbiased variance).
// save_mean / save_invstd receive the f32 batch statistics for the backward.
void launch_bn_nhwc_forward(DType t, const BnNhwcShape& s, const void* x, DType param_t, const void* w,
                            const void* b, DType running_t, void* running_mean, void* running_var, double momentum,
                            double eps, const void* residual, bool relu, void* y, float* save_mean,
                            float* save_invstd, void* workspace, cudaStream_t stream);

// Gradients of bn (y == null, relu_from_x false) or of relu(bn(x) [+ residual]) given its output y (the ReLU
// mask is y > 0), or of relu(bn(x)) without residual with relu_from_x (y == null: the mask is recomputed from x,
// the saved statistics and w/b as the forward rounded it, so the output is not read): dz = masked dy;
// dresidual = dz (may be null); dx (may be null), dweight/dbias (dtype param_t, may be null) as bn's
// gradients of dz, from x and the saved statistics.
void launch_bn_nhwc_backward(DType t, const BnNhwcShape& s, const void* dy, const void* y, bool relu_from_x,
                             const void* x, DType param_t, const void* w, const void* b, const float* save_mean,
                             const float* save_invstd, void* dx, void* dweight, void* dbias, void* dresidual,
                             void* workspace, cudaStream_t stream);

// The dual form y = relu(round(bn_p(x)) + round(bn_rp(r))), a ResNet block whose shortcut is a strided 1x1
// convolution + batch norm: the shortcut's normalised values are made inside the apply pass instead of being
// written by their own batch norm and read back. Both batch norms' statistics as launch_bn_nhwc_forward's.
void launch_bn_nhwc_dual_forward(DType t, const BnNhwcShape& s, const BnNhwcParams& p, const BnNhwcParams& rp,
                                 DType running_t, double momentum, double eps, const void* x, const void* r, void* y,
                                 float* save_mean, float* save_invstd, float* r_save_mean, float* r_save_invstd,
                                 void* workspace, cudaStream_t stream);

// Its gradients: the ReLU mask recomputed from x and r (y is not read), one pass for the sums of both batch
// norms, one pass writing dx and dr (each may be null); parameter gradients in each one's dtype.
void launch_bn_nhwc_dual_backward(DType t, const BnNhwcShape& s, const BnNhwcParams& p, const BnNhwcParams& rp,
                                  const void* dy, const void* x, const void* r, const float* save_mean,
                                  const float* save_invstd, const float* r_save_mean, const float* r_save_invstd,
                                  void* dx, void* dweight, void* dbias, void* dr, void* drweight, void* drbias,
                                  void* workspace, cudaStream_t stream);

}  // namespace kolo::cuda
