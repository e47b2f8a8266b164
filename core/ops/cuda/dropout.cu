// CUDA inverted dropout: element i is kept iff uniform01(seed, base + i) >= p (the CPU Generator's draw), so
// the same call on the gradient is the backward and no mask is stored. 16-byte vector accesses. An optional
// residual is added before the single rounding (a Transformer layer's x + dropout(f(x)) in one pass); an
// optional ReLU comes first (a feed-forward block's dropout(relu(x)), whose backward reads only y).
#include "core/device/cuda/cuda_check.h"
#include "core/ops/cuda/cuda_dtype.cuh"
#include "core/ops/cuda/nn_launch.h"
#include "core/ops/cuda/random.cuh"

namespace kolo::cuda {

namespace {

template <typename T, int W>
__global__ void dropout_kernel(const T* __restrict__ x, const T* __restrict__ r, bool relu, float p, Acc<T> keep_scale,
                               uint64_t seed, uint64_t base, int64_t n, T* __restrict__ y) {
  using A = Acc<T>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  auto one = [&](int64_t i, T v, T res) {
    const bool keep = uniform01(seed, base + static_cast<uint64_t>(i)) >= p;
    A a = convert<A>(v);
    if (relu) a = a < A(0) ? A(0) : a;  // NaN passes, as relu()
    const A d = keep ? a * keep_scale : A(0);
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

template <typename T, int W>
__global__ void relu_dropout_bwd_kernel(const T* __restrict__ g, const T* __restrict__ y, Acc<T> keep_scale, int64_t n,
                                        T* __restrict__ gx) {
  using A = Acc<T>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  auto one = [&](T gv, T yv) { return convert<T>(convert<A>(yv) > A(0) ? convert<A>(gv) * keep_scale : A(0)); };
  const int64_t nvec = n / W;
  for (int64_t k = tid; k < nvec; k += stride) {
    Vec<T, W> gv = reinterpret_cast<const Vec<T, W>*>(g)[k];
    const Vec<T, W> yv = reinterpret_cast<const Vec<T, W>*>(y)[k];
#pragma unroll
    for (int j = 0; j < W; ++j) gv.v[j] = one(gv.v[j], yv.v[j]);
    reinterpret_cast<Vec<T, W>*>(gx)[k] = gv;
  }
  for (int64_t i = nvec * W + tid; i < n; i += stride) gx[i] = one(g[i], y[i]);
}

template <typename A>
A keep_scale_of(double p) {
  return p < 1.0 ? static_cast<A>(1.0 / (1.0 - p)) : A(0);
}

}  // namespace

void launch_dropout(DType t, const void* x, const void* residual, bool relu, double p, uint64_t seed, uint64_t base,
                    int64_t n, void* y, cudaStream_t stream) {
  if (n == 0) return;
  dispatch_float_dtype(t, "dropout", [&](auto tag) {
    using T = decltype(tag);
    using A = Acc<T>;
    const A keep_scale = keep_scale_of<A>(p);
    constexpr int W = vec_width<T>();
    const bool vec = aligned16(x) && aligned16(y) && (!residual || aligned16(residual));
    const int threads = 256;
    if (vec) {
      dropout_kernel<T, W><<<grid_for((n + W - 1) / W, threads), threads, 0, stream>>>(
          static_cast<const T*>(x), static_cast<const T*>(residual), relu, static_cast<float>(p), keep_scale, seed,
          base, n, static_cast<T*>(y));
    } else {
      dropout_kernel<T, 1><<<grid_for(n, threads), threads, 0, stream>>>(
          static_cast<const T*>(x), static_cast<const T*>(residual), relu, static_cast<float>(p), keep_scale, seed,
          base, n, static_cast<T*>(y));
    }
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

void launch_relu_dropout_bwd(DType t, const void* g, const void* y, double p, int64_t n, void* gx,
                             cudaStream_t stream) {
  if (n == 0) return;
  dispatch_float_dtype(t, "relu_dropout backward", [&](auto tag) {
    using T = decltype(tag);
    const Acc<T> keep_scale = keep_scale_of<Acc<T>>(p);
    constexpr int W = vec_width<T>();
    const int threads = 256;
    const T *gt = static_cast<const T*>(g), *yt = static_cast<const T*>(y);
    T* out = static_cast<T*>(gx);
    if (aligned16(g) && aligned16(y) && aligned16(gx))
      relu_dropout_bwd_kernel<T, W>
          <<<grid_for((n + W - 1) / W, threads), threads, 0, stream>>>(gt, yt, keep_scale, n, out);
    else
      relu_dropout_bwd_kernel<T, 1><<<grid_for(n, threads), threads, 0, stream>>>(gt, yt, keep_scale, n, out);
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

}  // namespace kolo::cuda
