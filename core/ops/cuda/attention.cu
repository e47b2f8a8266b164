// Flash-attention-style fused attention on CUDA cores (f32 accumulation; f64 in f64). A block of kRows warps
// owns kRows query rows (forward, dQ) or key rows (dK/dV) of one head and streams the other side through
// shared memory in chunks of 32 rows. Within a warp, lane j computes the score of row j of the chunk (so a
// score is a full dot product, no shuffles), the chunk's probabilities are combined with an online softmax,
// and the output/gradient accumulators are spread over the lanes (lane owns dims lane, lane + 32, ...).
// The [Tq, Tk] matrix is never stored; the backward recomputes probabilities from the saved logsumexp and
// uses delta_i = rowsum(dO_i * O_i), which equals rowsum(P .* dP) with or without dropout.
#include "core/device/cuda/cuda_check.h"
#include "core/ops/cuda/attention_launch.h"
#include "core/ops/cuda/random.cuh"
#include "core/ops/cuda/row_reduce.cuh"

namespace kolo::cuda {

namespace {

constexpr int kRows = 8;  // warps per block
constexpr int kChunk = 32;

struct Params {
  AttnShape s;
  AttnOperand q, k, v, mask, gout;
  double scale, dropout_p;
  uint64_t seed, base;
  AttnOperand out;  // backward: the forward's output
  const void* lse;
  const void* delta;
  AttnOutput o0;  // forward: out; backward: gq (dq kernel) or gk (dkv kernel)
  void* stats;    // forward: lse; dq kernel: grad_scores (contiguous, may be null)
  AttnOutput o1;  // dkv kernel: gv
};

template <typename T>
__device__ __forceinline__ Acc<T> ld(const AttnOperand& a, int64_t b, int64_t h, int64_t i, int64_t d) {
  return convert<Acc<T>>(static_cast<const T*>(a.data)[b * a.stride[0] + h * a.stride[1] + i * a.stride[2] +
                                                       d * a.stride[3]]);
}

// Element (b, h, i, 0) of a strided output; element c of that row is at c * o.stride[3].
template <typename T>
__device__ __forceinline__ T* row_of(const AttnOutput& o, int64_t b, int64_t h, int64_t i) {
  return static_cast<T*>(o.data) + b * o.stride[0] + h * o.stride[1] + i * o.stride[2];
}

// Smem row pitch: odd, so lane j reading row j of a chunk hits distinct banks.
__host__ __device__ __forceinline__ int64_t pitch(int64_t d) { return d | 1; }

// Rows [r0, r0 + 32) of operand `a` for head (b, h) into dst [32][P] (rows >= n zero-filled).
template <typename T>
__device__ __forceinline__ void load_chunk(const AttnOperand& a, int64_t b, int64_t h, int64_t r0, int64_t n,
                                           int64_t d, Acc<T>* dst) {
  const int64_t p = pitch(d);
  for (int64_t e = threadIdx.x; e < kChunk * d; e += blockDim.x) {
    const int64_t j = e / d, c = e % d;
    dst[j * p + c] = r0 + j < n ? ld<T>(a, b, h, r0 + j, c) : Acc<T>(0);
  }
}

template <typename A>
__device__ __forceinline__ A dot_rows(const A* x, const A* y, int64_t d) {
  A s = 0;
  for (int64_t c = 0; c < d; ++c) s += x[c] * y[c];
  return s;
}

// Dropout factor of score (i, j) of head bh: 1 / (1 - p) if kept, else 0 (same counters as the CPU).
template <typename A>
__device__ __forceinline__ A keep_factor(const Params& pr, int64_t bh, int64_t i, int64_t j) {
  const uint64_t c = pr.base + static_cast<uint64_t>((bh * pr.s.tq + i) * pr.s.tk + j);
  const bool keep = uniform01(pr.seed, c) >= static_cast<float>(pr.dropout_p);
  return keep && pr.dropout_p < 1.0 ? static_cast<A>(1.0 / (1.0 - pr.dropout_p)) : A(0);
}

template <typename T, int DPL>
__global__ void __launch_bounds__(kRows * 32) attn_fwd_kernel(Params pr) {
  using A = Acc<T>;
  extern __shared__ unsigned char smem_raw[];
  const int64_t D = pr.s.dh, P = pitch(D);
  A* ks = reinterpret_cast<A*>(smem_raw);
  A* vs = ks + kChunk * P;
  A* qs = vs + kChunk * P;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t tiles = (pr.s.tq + kRows - 1) / kRows;
  const int64_t bh = blockIdx.x / tiles, i = (blockIdx.x % tiles) * kRows + warp;
  const int64_t b = bh / pr.s.h, h = bh % pr.s.h;
  const bool active = i < pr.s.tq;
  A* q = qs + warp * D;
  if (active)
    for (int64_t c = lane; c < D; c += 32) q[c] = ld<T>(pr.q, b, h, i, c);
  A acc[DPL];
#pragma unroll
  for (int t = 0; t < DPL; ++t) acc[t] = 0;
  A m = -INFINITY, l = 0;
  const A scale = static_cast<A>(pr.scale);
  for (int64_t kc = 0; kc < pr.s.tk; kc += kChunk) {
    __syncthreads();
    load_chunk<T>(pr.k, b, h, kc, pr.s.tk, D, ks);
    load_chunk<T>(pr.v, b, h, kc, pr.s.tk, D, vs);
    __syncthreads();
    if (!active) continue;
    const int64_t j = kc + lane;
    A s = -INFINITY;
    if (j < pr.s.tk) {
      s = dot_rows(q, ks + lane * P, D) * scale;
      if (pr.mask.data) s += ld<T>(pr.mask, b, h, i, j);
    }
    const A mnew = max(m, warp_max(s));
    const A p = s == -INFINITY ? A(0) : exp(s - mnew);
    const A corr = m == -INFINITY ? A(0) : exp(m - mnew);
    l = l * corr + warp_sum(p);
    m = mnew;
    const A pd = pr.dropout_p > 0.0 && j < pr.s.tk ? p * keep_factor<A>(pr, bh, i, j) : p;
#pragma unroll
    for (int t = 0; t < DPL; ++t) acc[t] *= corr;
    for (int jj = 0; jj < kChunk; ++jj) {
      const A pj = __shfl_sync(0xffffffffu, pd, jj);
      if (pj == A(0)) continue;  // same value in every lane: no divergence
#pragma unroll
      for (int t = 0; t < DPL; ++t) {
        const int64_t c = lane + 32 * t;
        if (c < D) acc[t] += pj * vs[jj * P + c];
      }
    }
  }
  if (!active) return;
  T* out = row_of<T>(pr.o0, b, h, i);
  const bool any = l > A(0);
#pragma unroll
  for (int t = 0; t < DPL; ++t) {
    const int64_t c = lane + 32 * t;
    if (c < D) out[c * pr.o0.stride[3]] = convert<T>(any ? acc[t] / l : A(0));
  }
  if (lane == 0) static_cast<A*>(pr.stats)[bh * pr.s.tq + i] = any ? m + ::log(l) : A(-INFINITY);
}

// delta[bh, i] = sum_c gout[b, h, i, c] * out[b, h, i, c]: a warp per row.
template <typename T>
__global__ void attn_delta_kernel(Params pr, Acc<T>* delta) {
  using A = Acc<T>;
  const int64_t rows = pr.s.b * pr.s.h * pr.s.tq, D = pr.s.dh;
  const int lane = threadIdx.x % 32;
  for (int64_t r = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x / 32) {
    const int64_t bh = r / pr.s.tq, i = r % pr.s.tq, b = bh / pr.s.h, h = bh % pr.s.h;
    A s = 0;
    for (int64_t c = lane; c < D; c += 32) s += ld<T>(pr.gout, b, h, i, c) * ld<T>(pr.out, b, h, i, c);
    s = warp_sum(s);
    if (lane == 0) delta[r] = s;
  }
}

// dQ (and grad_scores): a warp per query row, key chunks streamed.
template <typename T, int DPL>
__global__ void __launch_bounds__(kRows * 32) attn_dq_kernel(Params pr) {
  using A = Acc<T>;
  extern __shared__ unsigned char smem_raw[];
  const int64_t D = pr.s.dh, P = pitch(D);
  A* ks = reinterpret_cast<A*>(smem_raw);
  A* vs = ks + kChunk * P;
  A* qs = vs + kChunk * P;
  A* gs = qs + kRows * D;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t tiles = (pr.s.tq + kRows - 1) / kRows;
  const int64_t bh = blockIdx.x / tiles, i = (blockIdx.x % tiles) * kRows + warp;
  const int64_t b = bh / pr.s.h, h = bh % pr.s.h;
  const bool active = i < pr.s.tq;
  A* q = qs + warp * D;
  A* go = gs + warp * D;
  A lse = -INFINITY, dl = 0;
  if (active) {
    for (int64_t c = lane; c < D; c += 32) {
      q[c] = ld<T>(pr.q, b, h, i, c);
      go[c] = ld<T>(pr.gout, b, h, i, c);
    }
    lse = static_cast<const A*>(pr.lse)[bh * pr.s.tq + i];
    dl = static_cast<const A*>(pr.delta)[bh * pr.s.tq + i];
  }
  A dq[DPL];
#pragma unroll
  for (int t = 0; t < DPL; ++t) dq[t] = 0;
  const A scale = static_cast<A>(pr.scale);
  T* grad_scores = static_cast<T*>(pr.stats);
  for (int64_t kc = 0; kc < pr.s.tk; kc += kChunk) {
    __syncthreads();
    load_chunk<T>(pr.k, b, h, kc, pr.s.tk, D, ks);
    load_chunk<T>(pr.v, b, h, kc, pr.s.tk, D, vs);
    __syncthreads();
    if (!active) continue;
    const int64_t j = kc + lane;
    A ds = 0;
    if (j < pr.s.tk && lse != -INFINITY) {
      A s = dot_rows(q, ks + lane * P, D) * scale;
      if (pr.mask.data) s += ld<T>(pr.mask, b, h, i, j);
      const A p = s == -INFINITY ? A(0) : exp(s - lse);
      A dp = dot_rows(go, vs + lane * P, D);
      if (pr.dropout_p > 0.0) dp *= keep_factor<A>(pr, bh, i, j);
      ds = p * (dp - dl);
    }
    if (grad_scores && j < pr.s.tk) grad_scores[(bh * pr.s.tq + i) * pr.s.tk + j] = convert<T>(ds);
    for (int jj = 0; jj < kChunk; ++jj) {
      const A d = __shfl_sync(0xffffffffu, ds, jj);
      if (d == A(0)) continue;
#pragma unroll
      for (int t = 0; t < DPL; ++t) {
        const int64_t c = lane + 32 * t;
        if (c < D) dq[t] += d * ks[jj * P + c];
      }
    }
  }
  if (!active) return;
  T* gq = row_of<T>(pr.o0, b, h, i);
#pragma unroll
  for (int t = 0; t < DPL; ++t) {
    const int64_t c = lane + 32 * t;
    if (c < D) gq[c * pr.o0.stride[3]] = convert<T>(dq[t] * scale);
  }
}

// dK and dV: a warp per key row, query chunks (with their gout, lse and delta) streamed.
template <typename T, int DPL>
__global__ void __launch_bounds__(kRows * 32) attn_dkv_kernel(Params pr) {
  using A = Acc<T>;
  extern __shared__ unsigned char smem_raw[];
  const int64_t D = pr.s.dh, P = pitch(D);
  A* qs = reinterpret_cast<A*>(smem_raw);
  A* gos = qs + kChunk * P;
  A* krows = gos + kChunk * P;
  A* vrows = krows + kRows * D;
  A* lse_s = vrows + kRows * D;
  A* delta_s = lse_s + kChunk;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t tiles = (pr.s.tk + kRows - 1) / kRows;
  const int64_t bh = blockIdx.x / tiles, j = (blockIdx.x % tiles) * kRows + warp;
  const int64_t b = bh / pr.s.h, h = bh % pr.s.h;
  const bool active = j < pr.s.tk;
  A* kr = krows + warp * D;
  A* vr = vrows + warp * D;
  if (active)
    for (int64_t c = lane; c < D; c += 32) {
      kr[c] = ld<T>(pr.k, b, h, j, c);
      vr[c] = ld<T>(pr.v, b, h, j, c);
    }
  A dk[DPL], dv[DPL];
#pragma unroll
  for (int t = 0; t < DPL; ++t) dk[t] = dv[t] = 0;
  const A scale = static_cast<A>(pr.scale);
  const A* lse = static_cast<const A*>(pr.lse) + bh * pr.s.tq;
  const A* delta = static_cast<const A*>(pr.delta) + bh * pr.s.tq;
  for (int64_t qc = 0; qc < pr.s.tq; qc += kChunk) {
    __syncthreads();
    load_chunk<T>(pr.q, b, h, qc, pr.s.tq, D, qs);
    load_chunk<T>(pr.gout, b, h, qc, pr.s.tq, D, gos);
    if (threadIdx.x < kChunk) {
      const int64_t i = qc + threadIdx.x;
      lse_s[threadIdx.x] = i < pr.s.tq ? lse[i] : A(-INFINITY);
      delta_s[threadIdx.x] = i < pr.s.tq ? delta[i] : A(0);
    }
    __syncthreads();
    if (!active) continue;
    const int64_t i = qc + lane;
    A pd = 0, ds = 0;
    if (i < pr.s.tq && lse_s[lane] != -INFINITY) {
      A s = dot_rows(qs + lane * P, kr, D) * scale;
      if (pr.mask.data) s += ld<T>(pr.mask, b, h, i, j);
      const A p = s == -INFINITY ? A(0) : exp(s - lse_s[lane]);
      A dp = dot_rows(gos + lane * P, vr, D);
      pd = p;
      if (pr.dropout_p > 0.0) {
        const A f = keep_factor<A>(pr, bh, i, j);
        pd *= f;
        dp *= f;
      }
      ds = p * (dp - delta_s[lane]);
    }
    for (int ii = 0; ii < kChunk; ++ii) {
      const A a = __shfl_sync(0xffffffffu, pd, ii);
      const A g = __shfl_sync(0xffffffffu, ds, ii);
      if (a == A(0) && g == A(0)) continue;
#pragma unroll
      for (int t = 0; t < DPL; ++t) {
        const int64_t c = lane + 32 * t;
        if (c < D) {
          dv[t] += a * gos[ii * P + c];
          dk[t] += g * qs[ii * P + c];
        }
      }
    }
  }
  if (!active) return;
  T* gk = row_of<T>(pr.o0, b, h, j);
  T* gv = row_of<T>(pr.o1, b, h, j);
#pragma unroll
  for (int t = 0; t < DPL; ++t) {
    const int64_t c = lane + 32 * t;
    if (c < D) {
      gk[c * pr.o0.stride[3]] = convert<T>(dk[t] * scale);
      gv[c * pr.o1.stride[3]] = convert<T>(dv[t]);
    }
  }
}

// Calls fn(integral_constant<DPL>) for the smallest dims-per-lane that covers the head size.
template <typename Fn>
void by_head_size(int64_t dh, Fn&& fn) {
  KOLO_CHECK(dh >= 1 && dh <= kAttentionMaxHead, "scaled_dot_product_attention on CUDA: head size ", dh,
             " outside [1, ", kAttentionMaxHead, "]");
  if (dh <= 32) fn(std::integral_constant<int, 1>{});
  else if (dh <= 64) fn(std::integral_constant<int, 2>{});
  else if (dh <= 128) fn(std::integral_constant<int, 4>{});
  else fn(std::integral_constant<int, 8>{});
}

template <typename Kernel>
void launch_with_smem(Kernel kernel, int64_t blocks, size_t smem, const Params& pr, cudaStream_t stream) {
  if (smem > 48 * 1024)
    KOLO_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  KOLO_CHECK(blocks < (int64_t{1} << 31), "scaled_dot_product_attention on CUDA: ", blocks, " blocks is too many");
  kernel<<<static_cast<unsigned>(blocks), kRows * 32, smem, stream>>>(pr);
  KOLO_CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_attention_fused_fwd(DType t, const AttnShape& s, const AttnOperand& q, const AttnOperand& k,
                                const AttnOperand& v, const AttnOperand& mask, double scale, double dropout_p,
                                uint64_t seed, uint64_t base, const AttnOutput& out, void* lse, cudaStream_t stream) {
  if (s.b * s.h * s.tq == 0) return;
  Params pr{s, q, k, v, mask, {}, scale, dropout_p, seed, base, {}, nullptr, nullptr, out, lse, {}};
  dispatch_float_dtype(t, "scaled_dot_product_attention", [&](auto tag) {
    using T = decltype(tag);
    by_head_size(s.dh, [&](auto dpl) {
      const size_t smem = static_cast<size_t>(2 * kChunk * pitch(s.dh) + kRows * s.dh) * sizeof(Acc<T>);
      const int64_t blocks = s.b * s.h * ((s.tq + kRows - 1) / kRows);
      launch_with_smem(attn_fwd_kernel<T, decltype(dpl)::value>, blocks, smem, pr, stream);
    });
  });
}

void launch_attention_fused_bwd(DType t, const AttnShape& s, const AttnOperand& gout, const AttnOperand& q,
                                const AttnOperand& k, const AttnOperand& v, const AttnOperand& mask,
                                const AttnOperand& out, const void* lse, double scale, double dropout_p, uint64_t seed,
                                uint64_t base, const AttnOutput& gq, const AttnOutput& gk, const AttnOutput& gv,
                                void* grad_scores, void* delta, cudaStream_t stream) {
  if (s.b * s.h == 0) return;
  Params pr{s, q, k, v, mask, gout, scale, dropout_p, seed, base, out, lse, delta, {}, nullptr, {}};
  dispatch_float_dtype(t, "scaled_dot_product_attention backward", [&](auto tag) {
    using T = decltype(tag);
    using A = Acc<T>;
    const int64_t rows = s.b * s.h * s.tq;
    if (rows > 0) {
      attn_delta_kernel<T><<<grid_for(rows * 32, 256), 256, 0, stream>>>(pr, static_cast<A*>(delta));
      KOLO_CUDA_CHECK_LAUNCH();
    }
    by_head_size(s.dh, [&](auto dpl) {
      constexpr int kDpl = decltype(dpl)::value;
      if (s.tq > 0) {
        Params p1 = pr;
        p1.o0 = gq;
        p1.stats = grad_scores;
        const size_t smem = static_cast<size_t>(2 * kChunk * pitch(s.dh) + 2 * kRows * s.dh) * sizeof(A);
        launch_with_smem(attn_dq_kernel<T, kDpl>, s.b * s.h * ((s.tq + kRows - 1) / kRows), smem, p1, stream);
      }
      if (s.tk > 0) {
        Params p2 = pr;
        p2.o0 = gk;
        p2.o1 = gv;
        const size_t smem =
            static_cast<size_t>(2 * kChunk * pitch(s.dh) + 2 * kRows * s.dh + 2 * kChunk) * sizeof(A);
        launch_with_smem(attn_dkv_kernel<T, kDpl>, s.b * s.h * ((s.tk + kRows - 1) / kRows), smem, p2, stream);
      }
    });
  });
}

}  // namespace kolo::cuda
