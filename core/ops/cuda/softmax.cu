// CUDA softmax / log-softmax over the last dimension: a warp per row for rows up to 1024 elements, a
// 256-thread block per row beyond; one online (max, sum) pass then one write pass, 16-byte vector accesses.
#include "core/device/cuda/cuda_check.h"
#include "core/ops/cuda/nn_launch.h"
#include "core/ops/cuda/row_reduce.cuh"

namespace kolo::cuda {

namespace {

constexpr int kThreads = 256;

template <typename A>
__device__ __forceinline__ void push(MaxSum<A>& st, A x) {
  if (x == -INFINITY) return;
  if (x > st.m) {
    st.s = st.s * exp(st.m - x) + A(1);
    st.m = x;
  } else {
    st.s += exp(x - st.m);
  }
}

template <int TPR, typename T>
__global__ void softmax_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int64_t n, bool log) {
  using A = Acc<T>;
  __shared__ MaxSum<A> smem[kThreads / 32];
  const int t = threadIdx.x % TPR;
  const int per_block = blockDim.x / TPR;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * per_block + threadIdx.x / TPR; row < rows;
       row += static_cast<int64_t>(gridDim.x) * per_block) {
    const T* xr = x + row * n;
    MaxSum<A> st{-INFINITY, A(0)};
    for_row<TPR, T, A>(xr, n, t, [&](int64_t, A v) { push(st, v); });
    st = group_combine<TPR>(st, smem);
    // A row that is -inf everywhere gives NaN, as the CPU kernel (and PyTorch) does.
    const A shift = st.m == -INFINITY ? A(NAN) : st.m;
    if (log) {
      const A ls = ::log(st.s) + shift;
      write_row<TPR>(y + row * n, n, t, [&](int64_t i) { return convert<A>(xr[i]) - ls; });
    } else {
      const A inv = A(1) / st.s;
      write_row<TPR>(y + row * n, n, t, [&](int64_t i) { return exp(convert<A>(xr[i]) - shift) * inv; });
    }
  }
}

template <int TPR, typename T>
__global__ void softmax_bwd_kernel(const T* __restrict__ gy, const T* __restrict__ y, T* __restrict__ gx,
                                   int64_t rows, int64_t n, bool log) {
  using A = Acc<T>;
  __shared__ A smem[kThreads / 32];
  const int t = threadIdx.x % TPR;
  const int per_block = blockDim.x / TPR;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * per_block + threadIdx.x / TPR; row < rows;
       row += static_cast<int64_t>(gridDim.x) * per_block) {
    const T* g = gy + row * n;
    const T* yr = y + row * n;
    A dot = 0;
    if (log) {
      for_row<TPR, T, A>(g, n, t, [&](int64_t, A v) { dot += v; });
    } else {
      for_row<TPR, T, A>(g, n, t, [&](int64_t i, A v) { dot += v * convert<A>(yr[i]); });
    }
    dot = group_sum<TPR>(dot, smem);
    if (log) {
      write_row<TPR>(gx + row * n, n, t,
                     [&](int64_t i) { return convert<A>(g[i]) - exp(convert<A>(yr[i])) * dot; });
    } else {
      write_row<TPR>(gx + row * n, n, t,
                     [&](int64_t i) { return convert<A>(yr[i]) * (convert<A>(g[i]) - dot); });
    }
  }
}

// Launches kernel<32> or kernel<256> by row length.
template <typename Launch>
void by_row_length(int64_t rows, int64_t n, Launch&& launch) {
  if (n <= 1024) launch(std::integral_constant<int, 32>{}, grid_for(rows * 32, kThreads));
  else launch(std::integral_constant<int, kThreads>{}, grid_for(rows * kThreads, kThreads));
}

}  // namespace

void launch_softmax_fwd(DType t, const void* x, void* y, int64_t rows, int64_t n, bool log, cudaStream_t stream) {
  if (rows == 0 || n == 0) return;
  dispatch_float_dtype(t, "softmax", [&](auto tag) {
    using T = decltype(tag);
    by_row_length(rows, n, [&](auto tpr, int grid) {
      softmax_fwd_kernel<decltype(tpr)::value, T><<<grid, kThreads, 0, stream>>>(
          static_cast<const T*>(x), static_cast<T*>(y), rows, n, log);
    });
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

void launch_softmax_bwd(DType t, const void* gy, const void* y, void* gx, int64_t rows, int64_t n, bool log,
                        cudaStream_t stream) {
  if (rows == 0 || n == 0) return;
  dispatch_float_dtype(t, "softmax backward", [&](auto tag) {
    using T = decltype(tag);
    by_row_length(rows, n, [&](auto tpr, int grid) {
      softmax_bwd_kernel<decltype(tpr)::value, T><<<grid, kThreads, 0, stream>>>(
          static_cast<const T*>(gy), static_cast<const T*>(y), static_cast<T*>(gx), rows, n, log);
    });
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

}  // namespace kolo::cuda
