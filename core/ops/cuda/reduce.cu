// CUDA reductions. Rows are reduced by a warp (short rows) or a 256-thread block (long rows); when there are
// too few rows to fill the GPU, each row is split into chunks whose partial results (in the accumulator
// type) are reduced in a second pass. Column reductions use 32x8 thread tiles, coalesced along the
// innermost axis, with the same split-and-finish scheme along the reduced axis.
#include <limits>

#include "core/ops/cuda/map_kernels.cuh"
#include "core/ops/cuda/reduce_launch.h"

namespace kolo::cuda {

namespace {

constexpr int kThreads = 256;

template <typename A>
__device__ __forceinline__ bool is_nan(A v) {
  if constexpr (std::is_floating_point_v<A>) return isnan(v);
  else return false;
}

// NaN propagates through max/min, as in the CPU kernels.
template <typename A>
__device__ __forceinline__ A reduce_combine(ReduceOp op, A a, A b) {
  if (op == ReduceOp::Sum) return a + b;
  if (is_nan(a)) return a;
  if (is_nan(b)) return b;
  if (op == ReduceOp::Max) return b > a ? b : a;
  return b < a ? b : a;
}

template <typename A>
__device__ __forceinline__ A warp_reduce(ReduceOp op, A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = reduce_combine(op, v, static_cast<A>(__shfl_xor_sync(0xffffffffu, v, o)));
  return v;
}

// Each group of TPT threads (a warp or the whole block) reduces one task: chunk `s` of row `row`.
// out[task] = reduce(x[row, s*chunk : (s+1)*chunk]).
template <typename In, typename Out, typename A, int TPT>
__global__ void reduce_rows_kernel(ReduceOp op, const In* __restrict__ x, Out* __restrict__ out, int64_t rows,
                                   int64_t inner, int64_t splits) {
  constexpr int kGroups = kThreads / TPT;
  __shared__ A partial[kThreads / 32];
  const int group = threadIdx.x / TPT, lane = threadIdx.x % TPT;
  const int64_t tasks = rows * splits;
  const int64_t chunk = (inner + splits - 1) / splits;
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * kGroups; base < tasks;
       base += static_cast<int64_t>(gridDim.x) * kGroups) {
    const int64_t task = base + group;
    A acc = reduce_identity<A>(op);
    if (task < tasks) {
      const int64_t row = task / splits, s = task - row * splits;
      const int64_t begin = s * chunk;
      const int64_t end = min(inner, begin + chunk);
      const In* p = x + row * inner;
      for (int64_t i = begin + lane; i < end; i += TPT) acc = reduce_combine(op, acc, convert<A>(p[i]));
    }
    acc = warp_reduce(op, acc);
    if constexpr (TPT > 32) {
      if (lane % 32 == 0) partial[lane / 32] = acc;
      __syncthreads();
      if (lane < 32) {
        acc = lane < TPT / 32 ? partial[lane] : reduce_identity<A>(op);
        acc = warp_reduce(op, acc);
      }
      __syncthreads();
    }
    if (lane == 0 && task < tasks) out[task] = convert<Out>(acc);
  }
}

template <typename In, typename Out, typename A>
void rows_pass(ReduceOp op, const In* x, Out* out, int64_t rows, int64_t inner, int64_t splits, cudaStream_t stream) {
  const int64_t tasks = rows * splits;
  if ((inner + splits - 1) / splits <= 256) {
    reduce_rows_kernel<In, Out, A, 32><<<grid_for(tasks * 32, kThreads), kThreads, 0, stream>>>(op, x, out, rows, inner,
                                                                                            splits);
  } else {
    reduce_rows_kernel<In, Out, A, kThreads><<<grid_for(tasks * kThreads, kThreads), kThreads, 0, stream>>>(
        op, x, out, rows, inner, splits);
  }
  KOLO_CUDA_CHECK_LAUNCH();
}

int64_t row_splits(int64_t rows, int64_t inner) {
  const int64_t target = static_cast<int64_t>(sm_count()) * 4;  // blocks that keep every SM busy
  if (rows >= target || inner < 8192) return 1;
  return std::min<int64_t>((inner + 4095) / 4096, (target + rows - 1) / rows);
}

// Column tiles: thread (tx, ty) reads column blockIdx.x*32+tx, rows ty, ty+8, ... of split blockIdx.z.
template <typename In, typename Out, typename A>
__global__ void reduce_mid_kernel(ReduceOp op, const In* __restrict__ x, Out* __restrict__ out, int64_t outer,
                                  int64_t r, int64_t inner, int64_t splits) {
  __shared__ A tile[8][33];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * 32 + tx;
  const int64_t s = blockIdx.z;
  const int64_t chunk = (r + splits - 1) / splits;
  const int64_t begin = s * chunk, end = min(r, begin + chunk);
  for (int64_t o = blockIdx.y; o < outer; o += gridDim.y) {
    A acc = reduce_identity<A>(op);
    if (col < inner) {
      const In* p = x + o * r * inner + col;
      for (int64_t j = begin + ty; j < end; j += 8) acc = reduce_combine(op, acc, convert<A>(p[j * inner]));
    }
    tile[ty][tx] = acc;
    __syncthreads();
    if (ty == 0 && col < inner) {
#pragma unroll
      for (int k = 1; k < 8; ++k) acc = reduce_combine(op, acc, tile[k][tx]);
      out[(s * outer + o) * inner + col] = convert<Out>(acc);
    }
    __syncthreads();
  }
}

// out[i] = reduce over s of partial[s, i].
template <typename Out, typename A>
__global__ void finish_splits_kernel(ReduceOp op, const A* partial, Out* out, int64_t n, int64_t splits) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    A acc = partial[i];
    for (int64_t s = 1; s < splits; ++s) acc = reduce_combine(op, acc, partial[s * n + i]);
    out[i] = convert<Out>(acc);
  }
}

int64_t mid_splits(int64_t outer, int64_t r, int64_t inner) {
  const int64_t blocks = std::min<int64_t>(outer, 65535) * ((inner + 31) / 32);
  const int64_t target = static_cast<int64_t>(sm_count()) * 4;
  if (blocks >= target || r < 256) return 1;
  return std::min<int64_t>({(r + 127) / 128, (target + blocks - 1) / blocks, 1024});
}

struct ArgKey {
  int prio;  // 2: a NaN (the first one wins, as the CPU kernel and PyTorch), 1: a number
  double vd;
  int64_t i;
};

__device__ __forceinline__ bool better(const ArgKey& a, const ArgKey& b) {
  if (a.prio != b.prio) return a.prio > b.prio;
  if (a.prio == 1 && a.vd != b.vd) return a.vd > b.vd;
  return a.i < b.i;
}

template <typename T>
__global__ void argmax_kernel(const T* __restrict__ x, int64_t* __restrict__ out, int64_t rows, int64_t n) {
  const int warps = blockDim.x / 32;
  const int lane = threadIdx.x % 32;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * warps + threadIdx.x / 32; row < rows;
       row += static_cast<int64_t>(gridDim.x) * warps) {
    ArgKey best{-1, 0.0, 0};
    for (int64_t i = lane; i < n; i += 32) {
      const double v = convert<double>(x[row * n + i]);
      const ArgKey k{isnan(v) ? 2 : 1, v, i};
      if (best.prio < 0 || better(k, best)) best = k;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      ArgKey other;
      other.prio = __shfl_xor_sync(0xffffffffu, best.prio, o);
      other.vd = __shfl_xor_sync(0xffffffffu, best.vd, o);
      other.i = __shfl_xor_sync(0xffffffffu, best.i, o);
      if (other.prio >= 0 && (best.prio < 0 || better(other, best))) best = other;
    }
    if (lane == 0) out[row] = best.i;
  }
}

template <typename T>
__global__ void nonfinite_kernel(const T* __restrict__ x, int64_t n, int* flag) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  bool bad = false;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    bad |= !isfinite(convert<double>(x[i]));
  if (__syncthreads_or(bad) && threadIdx.x == 0) atomicOr(flag, 1);
}

template <typename T>
size_t acc_size() {
  return sizeof(Acc<T>);
}

size_t acc_bytes(DType dtype) {
  size_t b = 0;
  dispatch_device_dtype(dtype, [&](auto tag) { b = acc_size<decltype(tag)>(); });
  return b;
}

}  // namespace

size_t reduce_rows_scratch(int64_t rows, int64_t inner, DType dtype) {
  const int64_t splits = row_splits(rows, inner);
  return splits > 1 ? static_cast<size_t>(rows * splits) * acc_bytes(dtype) : 0;
}

size_t reduce_mid_scratch(int64_t outer, int64_t r, int64_t inner, DType dtype) {
  if (inner == 1) return reduce_rows_scratch(outer, r, dtype);
  const int64_t splits = mid_splits(outer, r, inner);
  return splits > 1 ? static_cast<size_t>(splits * outer * inner) * acc_bytes(dtype) : 0;
}

void launch_reduce_rows(ReduceOp op, const void* x, void* out, DType dtype, int64_t rows, int64_t inner,
                        void* scratch, cudaStream_t stream) {
  if (rows == 0) return;
  const int64_t splits = row_splits(rows, inner);
  dispatch_device_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = Acc<T>;
    const T* px = static_cast<const T*>(x);
    T* po = static_cast<T*>(out);
    if (splits == 1) {
      rows_pass<T, T, A>(op, px, po, rows, inner, 1, stream);
    } else {
      A* partial = static_cast<A*>(scratch);
      rows_pass<T, A, A>(op, px, partial, rows, inner, splits, stream);
      rows_pass<A, T, A>(op, partial, po, rows, splits, 1, stream);
    }
  });
}

void launch_reduce_mid(ReduceOp op, const void* x, void* out, DType dtype, int64_t outer, int64_t r, int64_t inner,
                       void* scratch, cudaStream_t stream) {
  if (inner == 1) return launch_reduce_rows(op, x, out, dtype, outer, r, scratch, stream);
  if (outer == 0 || inner == 0) return;
  const int64_t splits = mid_splits(outer, r, inner);
  const dim3 block(32, 8);
  const dim3 grid(static_cast<unsigned>((inner + 31) / 32), static_cast<unsigned>(std::min<int64_t>(outer, 65535)),
                  static_cast<unsigned>(splits));
  dispatch_device_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = Acc<T>;
    const T* px = static_cast<const T*>(x);
    T* po = static_cast<T*>(out);
    if (splits == 1) {
      reduce_mid_kernel<T, T, A><<<grid, block, 0, stream>>>(op, px, po, outer, r, inner, 1);
    } else {
      A* partial = static_cast<A*>(scratch);
      reduce_mid_kernel<T, A, A><<<grid, block, 0, stream>>>(op, px, partial, outer, r, inner, splits);
      KOLO_CUDA_CHECK_LAUNCH();
      const int64_t n = outer * inner;
      finish_splits_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(op, partial, po, n, splits);
    }
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

void launch_argmax_last(const void* x, int64_t* out, DType dtype, int64_t rows, int64_t n, cudaStream_t stream) {
  if (rows == 0) return;
  dispatch_device_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    argmax_kernel<<<grid_for(rows * 32, kThreads), kThreads, 0, stream>>>(static_cast<const T*>(x), out, rows, n);
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

void launch_any_nonfinite(const void* x, DType dtype, int64_t n, int* flag, cudaStream_t stream) {
  if (n == 0) return;
  dispatch_device_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    nonfinite_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(static_cast<const T*>(x), n, flag);
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

}  // namespace kolo::cuda
