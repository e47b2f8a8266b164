// Device helpers of the row-wise kernels (softmax, cross-entropy, layer norm): a row is handled by a group of
// TPR threads (one warp for short rows, a whole block for long ones); sums, maxima and online-softmax
// (max, sum) pairs are combined across the group with warp shuffles and, for blocks, shared memory.
#pragma once

#include <cmath>

#include "core/ops/cuda/cuda_dtype.cuh"

namespace kolo::cuda {

template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <typename A>
__device__ __forceinline__ A warp_max(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Online softmax state: running max m and sum s of exp(x - m). Combining two states rescales the smaller.
template <typename A>
struct MaxSum {
  A m, s;
};

template <typename A>
__device__ __forceinline__ MaxSum<A> combine(MaxSum<A> a, MaxSum<A> b) {
  const A m = max(a.m, b.m);
  if (m == -INFINITY) return {m, A(0)};
  return {m, a.s * exp(a.m - m) + b.s * exp(b.m - m)};
}

template <typename A>
__device__ __forceinline__ MaxSum<A> warp_combine(MaxSum<A> v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    MaxSum<A> other{__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)};
    v = combine(v, other);
  }
  return v;
}

// Reduction of `v` over the TPR threads of a row group with `op` (warp-level then, when TPR > 32, through
// `smem` holding TPR / 32 slots). Every thread of the group gets the result. TPR == blockDim.x when > 32.
template <int TPR, typename V, typename WarpOp, typename Op>
__device__ __forceinline__ V group_reduce(V v, V* smem, WarpOp warp_op, Op op) {
  v = warp_op(v);
  if constexpr (TPR > 32) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();  // smem may still be read from the previous reduction
    if (lane == 0) smem[warp] = v;
    __syncthreads();
    v = smem[0];
#pragma unroll
    for (int w = 1; w < TPR / 32; ++w) v = op(v, smem[w]);
  }
  return v;
}

template <int TPR, typename A>
__device__ __forceinline__ A group_sum(A v, A* smem) {
  return group_reduce<TPR>(v, smem, [](A x) { return warp_sum(x); }, [](A a, A b) { return a + b; });
}

template <int TPR, typename A>
__device__ __forceinline__ A group_max(A v, A* smem) {
  return group_reduce<TPR>(v, smem, [](A x) { return warp_max(x); }, [](A a, A b) { return max(a, b); });
}

template <int TPR, typename A>
__device__ __forceinline__ MaxSum<A> group_combine(MaxSum<A> v, MaxSum<A>* smem) {
  return group_reduce<TPR>(v, smem, [](MaxSum<A> x) { return warp_combine(x); },
                           [](MaxSum<A> a, MaxSum<A> b) { return combine(a, b); });
}

// Vectors (or, unaligned, elements) a thread loads before using any of them. A loop that used each load
// before issuing the next would wait one memory round trip per vector; a row of 1024 bf16 is 4 vectors per
// lane of a warp, so one batch covers it.
constexpr int kRowBatch = 4;

// Calls f(i, value as A) for the elements of row `r` (length n) owned by thread `t` of a group of TPR,
// with 16-byte vector loads when the row is aligned for them. The order of the calls is ascending i per
// thread, as a plain strided loop's.
template <int TPR, typename T, typename A, typename F>
__device__ __forceinline__ void for_row(const T* __restrict__ r, int64_t n, int t, F&& f) {
  constexpr int W = vec_width<T>();
  if (W > 1 && n % W == 0 && (reinterpret_cast<uintptr_t>(r) & 15u) == 0) {
    const auto* rv = reinterpret_cast<const Vec<T, W>*>(r);
    const int64_t nv = n / W;
    for (int64_t v0 = t; v0 < nv; v0 += kRowBatch * TPR) {
      Vec<T, W> x[kRowBatch];
#pragma unroll
      for (int u = 0; u < kRowBatch; ++u)
        if (v0 + u * TPR < nv) x[u] = rv[v0 + u * TPR];
#pragma unroll
      for (int u = 0; u < kRowBatch; ++u) {
        if (v0 + u * TPR >= nv) break;
#pragma unroll
        for (int j = 0; j < W; ++j) f((v0 + u * TPR) * W + j, convert<A>(x[u].v[j]));
      }
    }
  } else {
    for (int64_t i0 = t; i0 < n; i0 += kRowBatch * TPR) {
      T x[kRowBatch];
#pragma unroll
      for (int u = 0; u < kRowBatch; ++u)
        if (i0 + u * TPR < n) x[u] = r[i0 + u * TPR];
#pragma unroll
      for (int u = 0; u < kRowBatch; ++u) {
        if (i0 + u * TPR >= n) break;
        f(i0 + u * TPR, convert<A>(x[u]));
      }
    }
  }
}

// Writes row `r` (length n) from g(i) -> A with vector stores where aligned; same ownership as for_row. The
// values of a batch are all computed before any is stored, so g's loads are in flight together.
template <int TPR, typename T, typename G>
__device__ __forceinline__ void write_row(T* __restrict__ r, int64_t n, int t, G&& g) {
  constexpr int W = vec_width<T>();
  if (W > 1 && n % W == 0 && (reinterpret_cast<uintptr_t>(r) & 15u) == 0) {
    auto* rv = reinterpret_cast<Vec<T, W>*>(r);
    const int64_t nv = n / W;
    for (int64_t v0 = t; v0 < nv; v0 += kRowBatch * TPR) {
      Vec<T, W> x[kRowBatch];
#pragma unroll
      for (int u = 0; u < kRowBatch; ++u)
        if (v0 + u * TPR < nv) {
#pragma unroll
          for (int j = 0; j < W; ++j) x[u].v[j] = convert<T>(g((v0 + u * TPR) * W + j));
        }
#pragma unroll
      for (int u = 0; u < kRowBatch; ++u)
        if (v0 + u * TPR < nv) rv[v0 + u * TPR] = x[u];
    }
  } else {
    for (int64_t i0 = t; i0 < n; i0 += kRowBatch * TPR) {
      T x[kRowBatch];
#pragma unroll
      for (int u = 0; u < kRowBatch; ++u)
        if (i0 + u * TPR < n) x[u] = convert<T>(g(i0 + u * TPR));
#pragma unroll
      for (int u = 0; u < kRowBatch; ++u)
        if (i0 + u * TPR < n) r[i0 + u * TPR] = x[u];
    }
  }
}

}  // namespace kolo::cuda
