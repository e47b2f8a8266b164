// Launchers of the CUDA optimizer updates (optim/cuda/update_kernels.cu): the same rules as
// optim/update_kernels.h, over device pointers into a flat buffer, enqueued on `stream` with no host sync
// except where a launcher returns a host value (sum_squares).
//
// Every launcher covers a whole contiguous run of parameters in one grid-stride kernel (the flat buffer
// makes a "multi-tensor apply" a single range), vectorised with float4 when all pointers are 16-byte
// aligned. Reductions are deterministic: fixed per-block partials summed in a fixed order.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/tensor/dtype.h"

namespace kolo::optim_cuda {

// Scalar hyper-parameters as the CPU rules compute them (host-side folding keeps both devices identical).
struct SgdArgs {
  float lr, momentum, damp, weight_decay, trust;  // damp = 1 - dampening
  bool nesterov, first, use_momentum;
  const float* lr_at;  // device memory to read lr from when the kernel runs; null: lr
  const float* step_at;  // device memory holding the step count, deciding `first` when the kernel runs; or null
};
struct AdamArgs {
  float step_size, bc2_sqrt, beta1, beta2, eps, l2, shrink;
  // Device memory read when the kernel runs (null: the host values above): step_size, bc2_sqrt and shrink
  // are then made from lr, the step count and weight_decay there.
  const float* lr_at;
  const float* step_at;
  float weight_decay;
  bool decoupled;
};
struct LambArgs {
  float bc1, bc2, beta1, beta2, eps, weight_decay, lr;
  bool adapt;
};

void launch_sgd(float* p, const float* g, float* buf, int64_t n, const SgdArgs& a, cudaStream_t stream);
void launch_adam(float* p, const float* g, float* m, float* v, int64_t n, const AdamArgs& a, cudaStream_t stream);
// `partials` is device scratch of lamb_partials_size() doubles.
void launch_lamb(float* p, const float* g, float* m, float* v, float* u, int64_t n, const LambArgs& a,
                 double* partials, cudaStream_t stream);
int64_t lamb_partials_size();

// Sum of squares in f64 into *out (device); `partials` is device scratch of sum_squares_partials_size().
void launch_sum_squares(const float* x, int64_t n, double* partials, double* out, cudaStream_t stream);
int64_t sum_squares_partials_size();
void launch_scale(float* x, int64_t n, float s, cudaStream_t stream);

// Mixed precision: dst = float(src) * inv for src of `src_dtype` (F32/BF16/F16; F32 may alias dst); when
// `bad` is not null, sets *bad (device int, zeroed by the caller) to 1 if any result is not finite.
void launch_unscale_to_f32(const void* src, DType src_dtype, float* dst, int64_t n, float inv, int* bad,
                           cudaStream_t stream);
// dst = round-to-nearest-even(src) in `dst_dtype` (F32/BF16/F16).
void launch_cast_from_f32(const float* src, void* dst, DType dst_dtype, int64_t n, cudaStream_t stream);

}  // namespace kolo::optim_cuda
