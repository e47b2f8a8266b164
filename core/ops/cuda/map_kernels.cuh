// Generic elementwise map kernels over one or two inputs: a vectorised path (16-byte loads and stores)
// when every operand is contiguous and aligned, and a strided path driven by a StridedIndexer otherwise.
// The functor maps input elements to one output element; it runs in the kernel, so it must be
// __device__-callable and trivially copyable.
#pragma once

#include <algorithm>

#include "core/device/cuda/cuda_check.h"
#include "core/ops/cuda/cuda_dtype.cuh"

namespace kolo::cuda {

constexpr int kMapThreads = 256;

template <typename A, typename B>
constexpr int pair_width() {
  return std::min(vec_width<A>(), vec_width<B>());
}

template <typename Out, typename In, int W, typename F>
__global__ void map1_contig_kernel(Out* __restrict__ out, const In* __restrict__ in, int64_t n, F f) {
  const int64_t nvec = n / W;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t v = tid; v < nvec; v += stride) {
    const Vec<In, W> a = reinterpret_cast<const Vec<In, W>*>(in)[v];
    Vec<Out, W> o;
#pragma unroll
    for (int j = 0; j < W; ++j) o.v[j] = f(a.v[j]);
    reinterpret_cast<Vec<Out, W>*>(out)[v] = o;
  }
  for (int64_t i = nvec * W + tid; i < n; i += stride) out[i] = f(in[i]);
}

template <typename Out, typename In, typename F>
__global__ void map1_strided_kernel(Out* out, const In* in, StridedIndexer<2> ix, int64_t n, F f) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t off[2];
    strided_offsets(ix, i, off);
    out[off[0]] = f(in[off[1]]);
  }
}

template <typename Out, typename A, typename B, int W, typename F>
__global__ void map2_contig_kernel(Out* __restrict__ out, const A* __restrict__ a, const B* __restrict__ b,
                                   int64_t n, F f) {
  const int64_t nvec = n / W;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t v = tid; v < nvec; v += stride) {
    const Vec<A, W> va = reinterpret_cast<const Vec<A, W>*>(a)[v];
    const Vec<B, W> vb = reinterpret_cast<const Vec<B, W>*>(b)[v];
    Vec<Out, W> o;
#pragma unroll
    for (int j = 0; j < W; ++j) o.v[j] = f(va.v[j], vb.v[j]);
    reinterpret_cast<Vec<Out, W>*>(out)[v] = o;
  }
  for (int64_t i = nvec * W + tid; i < n; i += stride) out[i] = f(a[i], b[i]);
}

template <typename Out, typename A, typename B, typename F>
__global__ void map2_strided_kernel(Out* out, const A* a, const B* b, StridedIndexer<3> ix, int64_t n, F f) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t off[3];
    strided_offsets(ix, i, off);
    out[off[0]] = f(a[off[1]], b[off[2]]);
  }
}

template <int N>
bool all_unit_stride(const StridedIndexer<N>& ix) {
  if (ix.ndim > 1) return false;
  for (int k = 0; k < N; ++k)
    if (ix.ndim == 1 && ix.strides[k][0] != 1) return false;
  return true;
}

// out[i] = f(in[i]) over the elements described by ix (operand 0 out, 1 in).
template <typename Out, typename In, typename F>
void map1(Out* out, const In* in, const StridedIndexer<2>& ix, int64_t n, F f, cudaStream_t stream) {
  if (n == 0) return;
  if (all_unit_stride(ix) && aligned16(out) && aligned16(in)) {
    constexpr int W = pair_width<Out, In>();
    map1_contig_kernel<Out, In, W><<<grid_for((n + W - 1) / W, kMapThreads), kMapThreads, 0, stream>>>(out, in, n, f);
  } else {
    map1_strided_kernel<<<grid_for(n, kMapThreads), kMapThreads, 0, stream>>>(out, in, ix, n, f);
  }
  KOLO_CUDA_CHECK_LAUNCH();
}

// out[i] = f(a[i], b[i]) over the elements described by ix (operands out, a, b).
template <typename Out, typename A, typename B, typename F>
void map2(Out* out, const A* a, const B* b, const StridedIndexer<3>& ix, int64_t n, F f, cudaStream_t stream) {
  if (n == 0) return;
  if (all_unit_stride(ix) && aligned16(out) && aligned16(a) && aligned16(b)) {
    constexpr int W = std::min(pair_width<Out, A>(), vec_width<B>());
    map2_contig_kernel<Out, A, B, W><<<grid_for((n + W - 1) / W, kMapThreads), kMapThreads, 0, stream>>>(
        out, a, b, n, f);
  } else {
    map2_strided_kernel<<<grid_for(n, kMapThreads), kMapThreads, 0, stream>>>(out, a, b, ix, n, f);
  }
  KOLO_CUDA_CHECK_LAUNCH();
}

}  // namespace kolo::cuda
