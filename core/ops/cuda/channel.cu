// Per-channel CUDA kernels: batch norm in eval mode, bias gradients, and small per-channel conversions
// (see channel_launch.h). A block reduces one channel over [outer, inner] in a fixed order (deterministic).
#include "core/device/cuda/cuda_check.h"
#include "core/ops/cuda/channel_launch.h"
#include "core/ops/cuda/row_reduce.cuh"

namespace kolo::cuda {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ int64_t channel_index(const ChannelView& v, int64_t e, int64_t ch) {
  const int64_t o = e / v.inner, i = e % v.inner;
  return (o * v.c + ch) * v.inner + i;
}

template <typename T>
__global__ void channel_sums_kernel(ChannelView v, const T* dy, const T* x, const Acc<T>* mean,
                                    const Acc<T>* invstd, Acc<T>* sum_dy, Acc<T>* sum_dyxhat) {
  using A = Acc<T>;
  __shared__ A s1[kThreads / 32];
  __shared__ A s2[kThreads / 32];
  const int64_t m = v.outer * v.inner;
  for (int64_t ch = blockIdx.x; ch < v.c; ch += gridDim.x) {
    A a = 0, b = 0;
    const A mu = x ? mean[ch] : A(0), is = x ? invstd[ch] : A(0);
    for (int64_t e = threadIdx.x; e < m; e += blockDim.x) {
      const int64_t k = channel_index(v, e, ch);
      const A g = convert<A>(dy[k]);
      a += g;
      if (x) b += g * (convert<A>(x[k]) - mu) * is;
    }
    a = group_sum<kThreads>(a, s1);
    b = group_sum<kThreads>(b, s2);
    if (threadIdx.x == 0) {
      sum_dy[ch] = a;
      if (x) sum_dyxhat[ch] = b;
    }
  }
}

template <typename R, typename S>
__global__ void stats_kernel(const R* rmean, const R* rvar, double eps, int64_t c, S* mean, S* invstd) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < c;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    mean[i] = convert<S>(rmean[i]);
    invstd[i] = S(1) / sqrt(convert<S>(rvar[i]) + static_cast<S>(eps));
  }
}

template <typename T>
__global__ void apply_kernel(ChannelView v, const T* x, const T* w, const T* b, const Acc<T>* mean,
                             const Acc<T>* invstd, T* y) {
  using A = Acc<T>;
  const int64_t n = v.outer * v.c * v.inner;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ch = (i / v.inner) % v.c;
    const A scale = invstd[ch] * (w ? convert<A>(w[ch]) : A(1));
    const A shift = (b ? convert<A>(b[ch]) : A(0)) - mean[ch] * scale;
    y[i] = convert<T>(convert<A>(x[i]) * scale + shift);
  }
}

template <typename T>
__global__ void eval_dx_kernel(ChannelView v, const T* dy, const T* w, const Acc<T>* invstd, T* dx) {
  using A = Acc<T>;
  const int64_t n = v.outer * v.c * v.inner;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ch = (i / v.inner) % v.c;
    dx[i] = convert<T>(convert<A>(dy[i]) * invstd[ch] * (w ? convert<A>(w[ch]) : A(1)));
  }
}

template <typename D, typename S>
__global__ void convert_kernel(D* dst, const S* src, int64_t c) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < c;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = convert<D>(src[i]);
}

DType acc_dtype(DType t) { return t == DType::F64 ? DType::F64 : DType::F32; }

}  // namespace

void launch_channel_sums(DType t, const ChannelView& v, const void* dy, const void* x, const void* mean,
                         const void* invstd, void* sum_dy, void* sum_dyxhat, cudaStream_t stream) {
  if (v.c == 0) return;
  dispatch_float_dtype(t, "channel sums", [&](auto tag) {
    using T = decltype(tag);
    using A = Acc<T>;
    const int grid = static_cast<int>(std::min<int64_t>(v.c, 65535));
    channel_sums_kernel<T><<<grid, kThreads, 0, stream>>>(v, static_cast<const T*>(dy), static_cast<const T*>(x),
                                                          static_cast<const A*>(mean), static_cast<const A*>(invstd),
                                                          static_cast<A*>(sum_dy), static_cast<A*>(sum_dyxhat));
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

void launch_bn_stats_from_running(DType rt, const void* rmean, const void* rvar, double eps, int64_t c,
                                  DType stat_t, void* save_mean, void* save_invstd, cudaStream_t stream) {
  if (c == 0) return;
  dispatch_float_dtype(rt, "batch_norm", [&](auto rtag) {
    using R = decltype(rtag);
    dispatch_float_dtype(stat_t, "batch_norm", [&](auto stag) {
      using S = decltype(stag);
      if constexpr (std::is_same_v<S, float> || std::is_same_v<S, double>) {
        stats_kernel<R, S><<<grid_for(c, kThreads), kThreads, 0, stream>>>(
            static_cast<const R*>(rmean), static_cast<const R*>(rvar), eps, c, static_cast<S*>(save_mean),
            static_cast<S*>(save_invstd));
      } else {
        KOLO_FAIL("batch_norm: statistics dtype must be f32 or f64, got ", dtype_name(stat_t));
      }
    });
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

void launch_bn_apply(DType t, const ChannelView& v, const void* x, const void* w, const void* b, const void* mean,
                     const void* invstd, void* y, cudaStream_t stream) {
  const int64_t n = v.outer * v.c * v.inner;
  if (n == 0) return;
  dispatch_float_dtype(t, "batch_norm", [&](auto tag) {
    using T = decltype(tag);
    using A = Acc<T>;
    apply_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream>>>(
        v, static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(b), static_cast<const A*>(mean),
        static_cast<const A*>(invstd), static_cast<T*>(y));
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

void launch_bn_eval_dx(DType t, const ChannelView& v, const void* dy, const void* w, const void* invstd, void* dx,
                       cudaStream_t stream) {
  const int64_t n = v.outer * v.c * v.inner;
  if (n == 0) return;
  dispatch_float_dtype(t, "batch_norm backward", [&](auto tag) {
    using T = decltype(tag);
    eval_dx_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream>>>(
        v, static_cast<const T*>(dy), static_cast<const T*>(w), static_cast<const Acc<T>*>(invstd),
        static_cast<T*>(dx));
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

void launch_channel_store(DType t, const void* acc, int64_t c, void* out, cudaStream_t stream) {
  launch_channel_convert(t, out, acc_dtype(t), acc, c, stream);
}

void launch_channel_convert(DType dst_t, void* dst, DType src_t, const void* src, int64_t c, cudaStream_t stream) {
  if (c == 0) return;
  dispatch_float_dtype(dst_t, "channel convert", [&](auto dtag) {
    using D = decltype(dtag);
    dispatch_float_dtype(src_t, "channel convert", [&](auto stag) {
      using S = decltype(stag);
      convert_kernel<D, S><<<grid_for(c, kThreads), kThreads, 0, stream>>>(static_cast<D*>(dst),
                                                                           static_cast<const S*>(src), c);
    });
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

}  // namespace kolo::cuda
