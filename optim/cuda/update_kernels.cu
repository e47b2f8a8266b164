// CUDA kernels of the optimizer updates (formulas in optim/update_kernels.h), then their launchers.
#include "optim/cuda/update_launch.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "core/device/cuda/cuda_check.h"
#include "core/ops/cuda/launch_config.h"

namespace kolo::optim_cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxReduceBlocks = 1024;  // partial sums per reduction (fixed so the sum order is fixed)

// ---------------------------------------------------------------- kernels

__device__ __forceinline__ void sgd_elem(float& p, float g, float& b, const SgdArgs& a) {
  float d = (g + a.weight_decay * p) * a.trust;
  if (a.use_momentum) {
    const float m = a.first ? d : a.momentum * b + a.damp * d;
    b = m;
    d = a.nesterov ? d + a.momentum * m : m;
  }
  p -= a.lr * d;
}

__device__ __forceinline__ void adam_elem(float& p, float g, float& m, float& v, const AdamArgs& a) {
  const float gi = g + a.l2 * p;
  const float mi = a.beta1 * m + (1.0f - a.beta1) * gi;
  const float vi = a.beta2 * v + (1.0f - a.beta2) * gi * gi;
  m = mi;
  v = vi;
  p = p * a.shrink - a.step_size * mi / (sqrtf(vi) / a.bc2_sqrt + a.eps);
}

// Writes the LAMB direction u and returns it; p is read, not written (the second kernel applies it).
__device__ __forceinline__ float lamb_elem(float p, float g, float& m, float& v, const LambArgs& a) {
  const float mi = a.beta1 * m + (1.0f - a.beta1) * g;
  const float vi = a.beta2 * v + (1.0f - a.beta2) * g * g;
  m = mi;
  v = vi;
  return (mi / a.bc1) / (sqrtf(vi / a.bc2) + a.eps) + a.weight_decay * p;
}

// Sums `x` over the block in a fixed tree order; the result is valid in thread 0.
__device__ double block_sum(double x, double* shared) {
  shared[threadIdx.x] = x;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) shared[threadIdx.x] += shared[threadIdx.x + s];
    __syncthreads();
  }
  const double r = shared[0];
  __syncthreads();
  return r;
}

template <bool kVec>
__global__ void sgd_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ b, int64_t n,
                           SgdArgs a) {
  if (a.lr_at) a.lr = *a.lr_at;
  if (a.step_at) a.first = *a.step_at == 1.0f;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t start = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if (kVec) {
    const int64_t n4 = n / 4;
    for (int64_t i = start; i < n4; i += stride) {
      float4 pv = reinterpret_cast<float4*>(p)[i];
      const float4 gv = reinterpret_cast<const float4*>(g)[i];
      float4 bv = a.use_momentum ? reinterpret_cast<float4*>(b)[i] : float4{0, 0, 0, 0};
      sgd_elem(pv.x, gv.x, bv.x, a);
      sgd_elem(pv.y, gv.y, bv.y, a);
      sgd_elem(pv.z, gv.z, bv.z, a);
      sgd_elem(pv.w, gv.w, bv.w, a);
      reinterpret_cast<float4*>(p)[i] = pv;
      if (a.use_momentum) reinterpret_cast<float4*>(b)[i] = bv;
    }
    done = n4 * 4;
  }
  for (int64_t i = done + start; i < n; i += stride) {
    float pv = p[i], bv = a.use_momentum ? b[i] : 0.0f;
    sgd_elem(pv, g[i], bv, a);
    p[i] = pv;
    if (a.use_momentum) b[i] = bv;
  }
}

template <bool kVec>
__global__ void adam_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                            float* __restrict__ v, int64_t n, AdamArgs a) {
  if (a.step_at) {  // capturable (lr_at is set too): this run's coefficients from device memory
    const float lr = *a.lr_at;
    const float t = *a.step_at;
    a.step_size = lr / (1.0f - powf(a.beta1, t));
    a.bc2_sqrt = sqrtf(1.0f - powf(a.beta2, t));
    a.shrink = a.decoupled ? 1.0f - lr * a.weight_decay : 1.0f;
  }
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t start = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if (kVec) {
    const int64_t n4 = n / 4;
    for (int64_t i = start; i < n4; i += stride) {
      float4 pv = reinterpret_cast<float4*>(p)[i];
      const float4 gv = reinterpret_cast<const float4*>(g)[i];
      float4 mv = reinterpret_cast<float4*>(m)[i];
      float4 vv = reinterpret_cast<float4*>(v)[i];
      adam_elem(pv.x, gv.x, mv.x, vv.x, a);
      adam_elem(pv.y, gv.y, mv.y, vv.y, a);
      adam_elem(pv.z, gv.z, mv.z, vv.z, a);
      adam_elem(pv.w, gv.w, mv.w, vv.w, a);
      reinterpret_cast<float4*>(p)[i] = pv;
      reinterpret_cast<float4*>(m)[i] = mv;
      reinterpret_cast<float4*>(v)[i] = vv;
    }
    done = n4 * 4;
  }
  for (int64_t i = done + start; i < n; i += stride) {
    float pv = p[i], mv = m[i], vv = v[i];
    adam_elem(pv, g[i], mv, vv, a);
    p[i] = pv;
    m[i] = mv;
    v[i] = vv;
  }
}

// Phase 1 of LAMB: moments and direction u; per-block partial sums of p^2 and u^2 (f64) into partials.
__global__ void lamb_direction_kernel(const float* __restrict__ p, const float* __restrict__ g,
                                      float* __restrict__ m, float* __restrict__ v, float* __restrict__ u,
                                      int64_t n, LambArgs a, double* __restrict__ partials) {
  __shared__ double shared[kThreads];
  double p_sq = 0.0, u_sq = 0.0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    float mv = m[i], vv = v[i];
    const float pv = p[i];
    const float ui = lamb_elem(pv, g[i], mv, vv, a);
    m[i] = mv;
    v[i] = vv;
    u[i] = ui;
    p_sq += static_cast<double>(pv) * pv;
    u_sq += static_cast<double>(ui) * ui;
  }
  p_sq = block_sum(p_sq, shared);
  u_sq = block_sum(u_sq, shared);
  if (threadIdx.x == 0) {
    partials[2 * blockIdx.x] = p_sq;
    partials[2 * blockIdx.x + 1] = u_sq;
  }
}

// Phase 2: every block sums the partials in the same order, forms the trust ratio and applies p -= lr*trust*u.
__global__ void lamb_apply_kernel(float* __restrict__ p, const float* __restrict__ u, int64_t n, LambArgs a,
                                  const double* __restrict__ partials, int parts) {
  __shared__ double shared[kThreads];
  double p_sq = 0.0, u_sq = 0.0;
  for (int j = threadIdx.x; j < parts; j += blockDim.x) {
    p_sq += partials[2 * j];
    u_sq += partials[2 * j + 1];
  }
  p_sq = block_sum(p_sq, shared);
  u_sq = block_sum(u_sq, shared);
  float trust = 1.0f;
  if (a.adapt && p_sq > 0.0 && u_sq > 0.0) trust = static_cast<float>(sqrt(p_sq) / sqrt(u_sq));
  const float s = a.lr * trust;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) p[i] -= s * u[i];
}

__global__ void sum_squares_partial_kernel(const float* __restrict__ x, int64_t n, double* __restrict__ partials) {
  __shared__ double shared[kThreads];
  double s = 0.0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    s += static_cast<double>(x[i]) * x[i];
  s = block_sum(s, shared);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

__global__ void sum_partials_kernel(const double* __restrict__ partials, int parts, double* __restrict__ out) {
  __shared__ double shared[kThreads];
  double s = 0.0;
  for (int j = threadIdx.x; j < parts; j += blockDim.x) s += partials[j];
  s = block_sum(s, shared);
  if (threadIdx.x == 0) *out = s;
}

__global__ void scale_kernel(float* __restrict__ x, int64_t n, float s) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) x[i] *= s;
}

template <typename T>
__device__ __forceinline__ float to_f32(T v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return __bfloat162float(v);
  else if constexpr (std::is_same_v<T, __half>) return __half2float(v);
  else return v;
}

template <typename T>
__device__ __forceinline__ T from_f32(float v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return __float2bfloat16_rn(v);
  else if constexpr (std::is_same_v<T, __half>) return __float2half_rn(v);
  else return v;
}

// One flag write per block at most (a block-wide OR first), so an all-Inf gradient does not serialise on it.
template <typename T>
__global__ void unscale_kernel(const T* src, float* dst, int64_t n, float inv, int* bad) {
  int local = 0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float v = to_f32(src[i]) * inv;
    dst[i] = v;
    local |= !isfinite(v);
  }
  if (bad != nullptr && __syncthreads_or(local) && threadIdx.x == 0) *bad = 1;
}

template <typename T>
__global__ void cast_kernel(const float* __restrict__ src, T* __restrict__ dst, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = from_f32<T>(src[i]);
}

bool aligned16(const void* ptr) { return ptr == nullptr || reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

int reduce_grid(int64_t n) {
  const int g = kolo::cuda::grid_for(n, kThreads);
  return g < kMaxReduceBlocks ? g : kMaxReduceBlocks;
}

}  // namespace

// ---------------------------------------------------------------- launchers

void launch_sgd(float* p, const float* g, float* buf, int64_t n, const SgdArgs& a, cudaStream_t stream) {
  if (n == 0) return;
  const bool vec = aligned16(p) && aligned16(g) && (!a.use_momentum || aligned16(buf));
  const int grid = kolo::cuda::grid_for(vec ? (n + 3) / 4 : n, kThreads);
  if (vec)
    sgd_kernel<true><<<grid, kThreads, 0, stream>>>(p, g, buf, n, a);
  else
    sgd_kernel<false><<<grid, kThreads, 0, stream>>>(p, g, buf, n, a);
  KOLO_CUDA_CHECK_LAUNCH();
}

void launch_adam(float* p, const float* g, float* m, float* v, int64_t n, const AdamArgs& a, cudaStream_t stream) {
  if (n == 0) return;
  const bool vec = aligned16(p) && aligned16(g) && aligned16(m) && aligned16(v);
  const int grid = kolo::cuda::grid_for(vec ? (n + 3) / 4 : n, kThreads);
  if (vec)
    adam_kernel<true><<<grid, kThreads, 0, stream>>>(p, g, m, v, n, a);
  else
    adam_kernel<false><<<grid, kThreads, 0, stream>>>(p, g, m, v, n, a);
  KOLO_CUDA_CHECK_LAUNCH();
}

int64_t lamb_partials_size() { return 2 * kMaxReduceBlocks; }

void launch_lamb(float* p, const float* g, float* m, float* v, float* u, int64_t n, const LambArgs& a,
                 double* partials, cudaStream_t stream) {
  if (n == 0) return;
  const int parts = reduce_grid(n);
  lamb_direction_kernel<<<parts, kThreads, 0, stream>>>(p, g, m, v, u, n, a, partials);
  KOLO_CUDA_CHECK_LAUNCH();
  lamb_apply_kernel<<<kolo::cuda::grid_for(n, kThreads), kThreads, 0, stream>>>(p, u, n, a, partials, parts);
  KOLO_CUDA_CHECK_LAUNCH();
}

int64_t sum_squares_partials_size() { return kMaxReduceBlocks; }

void launch_sum_squares(const float* x, int64_t n, double* partials, double* out, cudaStream_t stream) {
  const int parts = n == 0 ? 1 : reduce_grid(n);
  sum_squares_partial_kernel<<<parts, kThreads, 0, stream>>>(x, n, partials);
  KOLO_CUDA_CHECK_LAUNCH();
  sum_partials_kernel<<<1, kThreads, 0, stream>>>(partials, parts, out);
  KOLO_CUDA_CHECK_LAUNCH();
}

void launch_scale(float* x, int64_t n, float s, cudaStream_t stream) {
  if (n == 0) return;
  scale_kernel<<<kolo::cuda::grid_for(n, kThreads), kThreads, 0, stream>>>(x, n, s);
  KOLO_CUDA_CHECK_LAUNCH();
}

void launch_unscale_to_f32(const void* src, DType src_dtype, float* dst, int64_t n, float inv, int* bad,
                           cudaStream_t stream) {
  if (n == 0) return;
  const int grid = kolo::cuda::grid_for(n, kThreads);
  switch (src_dtype) {
    case DType::F32:
      unscale_kernel<float><<<grid, kThreads, 0, stream>>>(static_cast<const float*>(src), dst, n, inv, bad);
      break;
    case DType::BF16:
      unscale_kernel<__nv_bfloat16>
          <<<grid, kThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(src), dst, n, inv, bad);
      break;
    case DType::F16:
      unscale_kernel<__half><<<grid, kThreads, 0, stream>>>(static_cast<const __half*>(src), dst, n, inv, bad);
      break;
    default: KOLO_FAIL("optimizer on CUDA: cannot convert ", dtype_name(src_dtype), " gradients to f32");
  }
  KOLO_CUDA_CHECK_LAUNCH();
}

void launch_cast_from_f32(const float* src, void* dst, DType dst_dtype, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  const int grid = kolo::cuda::grid_for(n, kThreads);
  switch (dst_dtype) {
    case DType::F32: cast_kernel<float><<<grid, kThreads, 0, stream>>>(src, static_cast<float*>(dst), n); break;
    case DType::BF16:
      cast_kernel<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(src, static_cast<__nv_bfloat16*>(dst), n);
      break;
    case DType::F16: cast_kernel<__half><<<grid, kThreads, 0, stream>>>(src, static_cast<__half*>(dst), n); break;
    default: KOLO_FAIL("optimizer on CUDA: cannot write f32 master weights into ", dtype_name(dst_dtype), " parameters");
  }
  KOLO_CUDA_CHECK_LAUNCH();
}

}  // namespace kolo::optim_cuda
