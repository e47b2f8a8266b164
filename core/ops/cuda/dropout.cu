// CUDA inverted dropout: element i is kept iff uniform01(seed, base + i) >= p (the CPU Generator's draw), so
// the same call on the gradient is the backward and no mask is stored. 16-byte vector accesses. An optional
// residual is added before the single rounding (a Transformer layer's x + dropout(f(x)) in one pass).
#include "core/device/cuda/cuda_check.h"
#include "core/ops/cuda/cuda_dtype.cuh"
#include "core/ops/cuda/nn_launch.h"
#include "core/ops/cuda/random.cuh"

namespace kolo::cuda {

namespace {

template <typename T, int W>
__global__ void dropout_kernel(const T* __restrict__ x, const T* __restrict__ r, float p, Acc<T> keep_scale,
                               uint64_t seed, uint64_t base, int64_t n, T* __restrict__ y) {
  using A = Acc<T>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  auto one = [&](int64_t i, T v, T res) {
    const bool keep = uniform01(seed, base + static_cast<uint64_t>(i)) >= p;
    const A d = keep ? convert<A>(v) * keep_scale : A(0);
    return convert<T>(r ? convert<A>(res) + d : d);
  };
  const int64_t nvec = n / W;
  for (int64_t k = tid; k < nvec; k += stride) {
    Vec<T, W> v = reinterpret_cast<const Vec<T, W>*>(x)[k];
    Vec<T, W> rv{};
    if (r) rv = reinterpret_cast<const Vec<T, W>*>(r)[k];
#pragma unroll
    for (int j = 0; j < W; ++j) v.v[j] = one(k * W + j, v.v[j], rv.v[j]);
    reinterpret_cast<Vec<T, W>*>(y)[k] = v;
  }
  for (int64_t i = nvec * W + tid; i < n; i += stride) y[i] = one(i, x[i], r ? r[i] : T{});
}

}  // namespace

void launch_dropout(DType t, const void* x, const void* residual, double p, uint64_t seed, uint64_t base, int64_t n,
                    void* y, cudaStream_t stream) {
  if (n == 0) return;
  dispatch_float_dtype(t, "dropout", [&](auto tag) {
    using T = decltype(tag);
    using A = Acc<T>;
    const A keep_scale = p < 1.0 ? static_cast<A>(1.0 / (1.0 - p)) : A(0);
    constexpr int W = vec_width<T>();
    const bool vec = aligned16(x) && aligned16(y) && (!residual || aligned16(residual));
    const int threads = 256;
    if (vec) {
      dropout_kernel<T, W><<<grid_for((n + W - 1) / W, threads), threads, 0, stream>>>(
          static_cast<const T*>(x), static_cast<const T*>(residual), static_cast<float>(p), keep_scale, seed, base, n,
          static_cast<T*>(y));
    } else {
      dropout_kernel<T, 1><<<grid_for(n, threads), threads, 0, stream>>>(
          static_cast<const T*>(x), static_cast<const T*>(residual), static_cast<float>(p), keep_scale, seed, base, n,
          static_cast<T*>(y));
    }
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

}  // namespace kolo::cuda
