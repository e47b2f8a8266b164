// Tensor-core fused attention for short sequences (the tile path of attention_launch.h). A block owns one
// head: its Q, K, V (and dO) rows sit in shared memory, the [Tq, Tk] scores never leave it, and every product
// is a WMMA bf16/f16 GEMM with f32 accumulation. Warp w owns rows [16w, 16w + 16) of every row-tiled matrix,
// so the forward needs no block barrier after the loads; the backward needs two: between the softmax
// gradient (rows of queries) and the key-side products dK, dV (columns), and after those products, before
// the memory they read is reused for staging.
//
// Sequences of Transformer-big training (64 tokens, 16 heads of 64) make attention memory-bound: one head
// reads 24 KiB and does 1 MFLOP forward. The GEMM path spends most of its time writing and re-reading the
// f32 score matrices; here the traffic is the operands once, and the output.
#include <mma.h>

#include "core/device/cuda/cuda_check.h"
#include "core/ops/cuda/attention_launch.h"
#include "core/ops/cuda/cuda_dtype.cuh"
#include "core/ops/cuda/random.cuh"

namespace kolo::cuda {

namespace {

namespace wmma = nvcuda::wmma;

constexpr int kT = static_cast<int>(kAttentionTileMaxLen);
constexpr int kWarps = kT / 16;
constexpr int kThreads = kWarps * 32;
// Row padding: 16 bytes on half rows and f32 rows moves consecutive rows by 4 banks, so the 8-row phases
// of a WMMA load or store hit distinct banks.
constexpr int kPadH = 8;
constexpr int kPadF = 4;

template <int D>
struct Layout {
  static constexpr int ldh = D + kPadH;                  // Q, K, V, dO rows (half)
  static constexpr int ldp = kT + kPadH;                 // P, dS rows (half)
  static constexpr int ldf = (D > kT ? D : kT) + kPadF;  // f32 scores, dP, and output staging rows
  // P and dS live in the f32 rows their warp computed them from (16 half rows of ldp fit in 16 f32 rows of
  // ldf), so their 16-row blocks are this many half elements apart. Sharing the memory is what lets three
  // backward blocks (five forward) share a multiprocessor instead of two (four).
  static constexpr int blk = 16 * ldf * 2;
  static constexpr size_t op_bytes = size_t{kT} * ldh * 2;
  static constexpr size_t f_bytes = size_t{kT} * ldf * 4;
  static constexpr size_t fwd_smem = 3 * op_bytes + f_bytes;
  static constexpr size_t bwd_smem = 4 * op_bytes + 2 * f_bytes;
  static_assert(16 * ldp * 2 <= 16 * ldf * 4, "a warp's half rows must fit in its f32 rows");
};

struct TileParams {
  AttnShape s;
  AttnOperand q, k, v, mask, gout;
  float scale, dropout_p, keep_scale;  // keep_scale = 1 / (1 - p), 0 when p == 1
  uint64_t seed, base;
  const float* lse_in;  // backward: the forward's logsumexp
  float* lse_out;       // forward
  void* grad_scores;    // backward, contiguous [B, H, Tq, Tk], may be null
  AttnOutput o0, o1, o2;  // forward: out; backward: gq, gk, gv
};

// Rows [0, n) of head (b, h) of `a` into dst (pitch ldh), rows [n, kT) zeroed: zero keys and values keep the
// padded products finite. Each thread moves 16-byte vectors (the launcher checked the alignment).
template <typename T, int D>
__device__ __forceinline__ void load_rows(const AttnOperand& a, int64_t b, int64_t h, int n, T* dst) {
  constexpr int kVec = D / 8;
  const T* head = static_cast<const T*>(a.data) + b * a.stride[0] + h * a.stride[1];
#pragma unroll
  for (int it = 0; it < kT * kVec / kThreads; ++it) {
    const int e = it * kThreads + static_cast<int>(threadIdx.x), r = e / kVec, c = e % kVec;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (r < n) v = __ldg(reinterpret_cast<const uint4*>(head + r * a.stride[2] + c * 8));
    *reinterpret_cast<uint4*>(dst + r * Layout<D>::ldh + c * 8) = v;
  }
}

// A warp's 16 staged f32 rows (pitch ldf, first row row0) times `mul` into rows < n of output o.
template <typename T, int D>
__device__ __forceinline__ void store_rows(const float* stage, int row0, int n, const AttnOutput& o, int64_t b,
                                           int64_t h, float mul) {
  constexpr int kVec = D / 8;
  const int lane = threadIdx.x % 32;
  T* head = static_cast<T*>(o.data) + b * o.stride[0] + h * o.stride[1];
#pragma unroll
  for (int it = 0; it < 16 * kVec / 32; ++it) {
    const int e = it * 32 + lane, r = e / kVec, c = e % kVec;
    if (row0 + r >= n) continue;
    const float* src = stage + r * Layout<D>::ldf + c * 8;
    alignas(16) T v[8];
#pragma unroll
    for (int x = 0; x < 8; ++x) v[x] = convert<T>(src[x] * mul);
    *reinterpret_cast<uint4*>(head + (row0 + r) * o.stride[2] + c * 8) = *reinterpret_cast<const uint4*>(v);
  }
}


// Dropout factor of column j of global score row g (same counters as the CPU and the other CUDA paths).
__device__ __forceinline__ float keep_factor(const TileParams& pr, int64_t g, int j) {
  return dropout_factor(pr.seed, pr.base + static_cast<uint64_t>(g * pr.s.tk + j), pr.dropout_p, pr.keep_scale);
}

// The head this block owns.
struct Head {
  int64_t bh, b, h;
  int tq, tk;
};

__device__ __forceinline__ Head head_of(const TileParams& pr) {
  const int64_t bh = blockIdx.x;
  return {bh, bh / pr.s.h, bh % pr.s.h, static_cast<int>(pr.s.tq), static_cast<int>(pr.s.tk)};
}

// In the softmax phases lane l of a warp owns row l / 2 of the warp's 16 rows, columns [32 * (l % 2), + 32):
// a row's max and sum combine over one lane pair (one shuffle each), and a lane's 32 values are independent
// work, where a warp per row would chain ten shuffles per row through 16 rows.
constexpr int kCols = kT / 2;

struct LaneRow {
  int r, c0;  // row within the warp's 16, first column
};

__device__ __forceinline__ LaneRow lane_row() {
  const int lane = threadIdx.x % 32;
  return {lane >> 1, (lane & 1) * kCols};
}

// The mask at this lane's columns of query row i, 0 outside the scores. Loaded before the score GEMM, so
// the latency of these scattered reads overlaps the tensor-core work.
template <typename T>
__device__ __forceinline__ void load_mask(const TileParams& pr, const Head& hd, int i, int c0, float (&m)[kCols]) {
  const T* mask = static_cast<const T*>(pr.mask.data);
  const int64_t off = hd.b * pr.mask.stride[0] + hd.h * pr.mask.stride[1] + i * pr.mask.stride[2];
#pragma unroll
  for (int k = 0; k < kCols; ++k) {
    const int j = c0 + k;
    m[k] = mask && i < hd.tq && j < hd.tk ? convert<float>(mask[off + j * pr.mask.stride[3]]) : 0.0f;
  }
}

// 32 f32 values from 16-byte aligned shared memory.
__device__ __forceinline__ void load_f32(const float* src, float (&x)[kCols]) {
#pragma unroll
  for (int q = 0; q < kCols / 4; ++q) {
    const float4 v = reinterpret_cast<const float4*>(src)[q];
    x[4 * q] = v.x;
    x[4 * q + 1] = v.y;
    x[4 * q + 2] = v.z;
    x[4 * q + 3] = v.w;
  }
}

// 32 values as T into 16-byte aligned shared memory.
template <typename T>
__device__ __forceinline__ void store_half(T* dst, const float (&x)[kCols]) {
#pragma unroll
  for (int q = 0; q < kCols / 8; ++q) {
    alignas(16) T v[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) v[e] = convert<T>(x[8 * q + e]);
    reinterpret_cast<uint4*>(dst)[q] = *reinterpret_cast<const uint4*>(v);
  }
}

using Acc16 = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
template <typename T, typename Layout_>
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, T, Layout_>;
template <typename T, typename Layout_>
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, T, Layout_>;

// out (16 x 16*nk, f32, pitch ldf) = rows [row0, row0 + 16) of x times y^T, x and y [kT][ldh]: the scores
// of Q K^T and the dP of dO V^T.
template <typename T, int D>
__device__ __forceinline__ void rows_times_rows_t(const T* x, const T* y, int row0, int nk, float* out) {
  constexpr int ldh = Layout<D>::ldh;
  FragA<T, wmma::row_major> a[D / 16];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) wmma::load_matrix_sync(a[kk], x + row0 * ldh + kk * 16, ldh);
  for (int n = 0; n < nk; ++n) {
    Acc16 c;
    wmma::fill_fragment(c, 0.0f);
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      FragB<T, wmma::col_major> bt;
      wmma::load_matrix_sync(bt, y + n * 16 * ldh + kk * 16, ldh);
      wmma::mma_sync(c, a[kk], bt, c);
    }
    wmma::store_matrix_sync(out + n * 16, c, Layout<D>::ldf, wmma::mem_row_major);
  }
}

// c (16 x D) = a (16 x 16*nk; row block `tile` of p, or column block `tile` of p^T when ATrans) times rows
// [0, 16*nk) of y [kT][ldh]. p's 16-row blocks are blk elements apart, each of pitch ldp.
template <typename T, int D, bool ATrans>
__device__ __forceinline__ void tile_times_rows(const T* p, int tile, int nk, const T* y, Acc16 (&c)[D / 16]) {
  constexpr int ldh = Layout<D>::ldh, ldp = Layout<D>::ldp, blk = Layout<D>::blk;
  using ALayout = std::conditional_t<ATrans, wmma::col_major, wmma::row_major>;
#pragma unroll
  for (int n = 0; n < D / 16; ++n) wmma::fill_fragment(c[n], 0.0f);
  for (int kk = 0; kk < nk; ++kk) {
    FragA<T, ALayout> a;
    wmma::load_matrix_sync(a, ATrans ? p + kk * blk + tile * 16 : p + tile * blk + kk * 16, ldp);
#pragma unroll
    for (int n = 0; n < D / 16; ++n) {
      FragB<T, wmma::row_major> bm;
      wmma::load_matrix_sync(bm, y + kk * 16 * ldh + n * 16, ldh);
      wmma::mma_sync(c[n], a, bm, c[n]);
    }
  }
}

// A warp's 16 x D product into f32 staging rows (pitch ldf).
template <int D>
__device__ __forceinline__ void stage(const Acc16 (&c)[D / 16], float* rows) {
#pragma unroll
  for (int n = 0; n < D / 16; ++n) wmma::store_matrix_sync(rows + n * 16, c[n], Layout<D>::ldf, wmma::mem_row_major);
}

// Loads the head's q, k, v into the first three operand tiles of smem; returns the memory after them.
template <typename T, int D>
__device__ __forceinline__ unsigned char* load_qkv(const TileParams& pr, const Head& hd, unsigned char* smem, T*& qs,
                                                   T*& ks, T*& vs) {
  qs = reinterpret_cast<T*>(smem);
  ks = qs + kT * Layout<D>::ldh;
  vs = ks + kT * Layout<D>::ldh;
  load_rows<T, D>(pr.q, hd.b, hd.h, hd.tq, qs);
  load_rows<T, D>(pr.k, hd.b, hd.h, hd.tk, ks);
  load_rows<T, D>(pr.v, hd.b, hd.h, hd.tk, vs);
  return reinterpret_cast<unsigned char*>(vs + kT * Layout<D>::ldh);
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) tile_fwd_kernel(TileParams pr) {
  using L = Layout<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  const Head hd = head_of(pr);
  const int64_t bh = hd.bh, b = hd.b, h = hd.h;
  const int tq = hd.tq, tk = hd.tk;
  T *qs, *ks, *vs;
  float* fs = reinterpret_cast<float*>(load_qkv<T, D>(pr, hd, smem, qs, ks, vs));
  __syncthreads();
  const int warp = threadIdx.x / 32, row0 = warp * 16;
  if (row0 >= tq) return;
  const int nk = (tk + 15) / 16;
  float* rows = fs + row0 * L::ldf;
  const LaneRow lr = lane_row();
  const int i = row0 + lr.r;
  const int64_t g = bh * tq + i;
  float x[kCols];
  load_mask<T>(pr, hd, i, lr.c0, x);
  rows_times_rows_t<T, D>(qs, ks, row0, nk, rows);
  __syncwarp();
  float s_[kCols];
  load_f32(rows + lr.r * L::ldf + lr.c0, s_);
  float mx = -INFINITY;
#pragma unroll
  for (int k = 0; k < kCols; ++k) {  // padded query rows come out all zero, keeping their outputs finite
    x[k] = i < tq && lr.c0 + k < tk ? s_[k] * pr.scale + x[k] : -INFINITY;
    mx = fmaxf(mx, x[k]);
  }
  mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
  float sum = 0.0f;
#pragma unroll
  for (int k = 0; k < kCols; ++k) {
    x[k] = x[k] == -INFINITY ? 0.0f : __expf(x[k] - mx);
    sum += x[k];
  }
  sum += __shfl_xor_sync(0xffffffffu, sum, 1);
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  if (lr.c0 == 0 && i < tq) pr.lse_out[g] = sum > 0.0f ? mx + logf(sum) : -INFINITY;
#pragma unroll
  for (int k = 0; k < kCols; ++k)
    x[k] = x[k] != 0.0f ? x[k] * inv * keep_factor(pr, g, lr.c0 + k) : 0.0f;
  T* ps = reinterpret_cast<T*>(rows);  // P over the scores every lane of the warp has read
  __syncwarp();
  store_half(ps + lr.r * L::ldp + lr.c0, x);
  __syncwarp();
  Acc16 o[D / 16];
  tile_times_rows<T, D, false>(ps, 0, nk, vs, o);  // O = P V
  __syncwarp();
  stage<D>(o, rows);
  __syncwarp();
  store_rows<T, D>(rows, row0, tq, pr.o0, b, h, 1.0f);
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) tile_bwd_kernel(TileParams pr) {
  using L = Layout<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  const Head hd = head_of(pr);
  const int64_t bh = hd.bh, b = hd.b, h = hd.h;
  const int tq = hd.tq, tk = hd.tk;
  T *qs, *ks, *vs;
  T* gos = reinterpret_cast<T*>(load_qkv<T, D>(pr, hd, smem, qs, ks, vs));
  load_rows<T, D>(pr.gout, b, h, tq, gos);
  float* ss = reinterpret_cast<float*>(gos + kT * L::ldh);
  float* dps = ss + kT * L::ldf;
  T* ps = reinterpret_cast<T*>(ss);    // P over S, block by block (Layout::blk)
  T* dss = reinterpret_cast<T*>(dps);  // dS over dP
  __syncthreads();
  const int warp = threadIdx.x / 32, row0 = warp * 16;
  const int nq = (tq + 15) / 16, nk = (tk + 15) / 16;
  T* gs = static_cast<T*>(pr.grad_scores);
  if (warp < nq) {
    float* srows = ss + row0 * L::ldf;
    float* dprows = dps + row0 * L::ldf;
    const LaneRow lr = lane_row();
    const int i = row0 + lr.r;
    const int64_t g = bh * tq + i;
    float mk[kCols];
    load_mask<T>(pr, hd, i, lr.c0, mk);
    const float l = i < tq ? pr.lse_in[g] : -INFINITY;
    rows_times_rows_t<T, D>(qs, ks, row0, nk, srows);   // S = Q K^T (unscaled)
    rows_times_rows_t<T, D>(gos, vs, row0, nk, dprows);  // dP = dO V^T
    __syncwarp();
    float p[kCols], dpe[kCols];
    load_f32(srows + lr.r * L::ldf + lr.c0, p);
    load_f32(dprows + lr.r * L::ldf + lr.c0, dpe);
    float delta = 0.0f;
    uint32_t dropped = 0;  // bit k: column c0 + k dropped
#pragma unroll
    for (int k = 0; k < kCols; ++k) {
      // Columns past the keys were never written by the score GEMMs: nothing of them may reach delta.
      const bool valid = l != -INFINITY && lr.c0 + k < tk;
      const float x = valid ? p[k] * pr.scale + mk[k] : -INFINITY;
      p[k] = x == -INFINITY ? 0.0f : __expf(x - l);
      const float f = p[k] != 0.0f ? keep_factor(pr, g, lr.c0 + k) : 1.0f;
      if (f == 0.0f) dropped |= 1u << k;
      dpe[k] = valid ? dpe[k] * f : 0.0f;
      delta += p[k] * dpe[k];
    }
    // delta = rowsum(P .* dropout(dP)) = rowsum(dO .* O) of the forward, without reading O.
    delta += __shfl_xor_sync(0xffffffffu, delta, 1);
    const float kept = pr.dropout_p > 0.0f ? pr.keep_scale : 1.0f;
#pragma unroll
    for (int k = 0; k < kCols; ++k) {
      dpe[k] = p[k] * (dpe[k] - delta);  // dS
      p[k] = dropped >> k & 1u ? 0.0f : p[k] * kept;
    }
    __syncwarp();  // every lane has read its S and dP rows
    store_half(ps + warp * L::blk + lr.r * L::ldp + lr.c0, p);
    store_half(dss + warp * L::blk + lr.r * L::ldp + lr.c0, dpe);
    if (gs && i < tq) {
#pragma unroll
      for (int k = 0; k < kCols; ++k)
        if (lr.c0 + k < tk) gs[g * tk + lr.c0 + k] = convert<T>(dpe[k]);
    }
  }
  __syncthreads();
  // Key row tile `warp`: dV = P^T dO and dK = scale dS^T Q read every warp's P and dS, so they stay in
  // registers until all warps are past that point; the staging then reuses this warp's P rows.
  Acc16 dv[D / 16], dk[D / 16];
  if (warp < nk) {
    tile_times_rows<T, D, true>(ps, warp, nq, gos, dv);
    tile_times_rows<T, D, true>(dss, warp, nq, qs, dk);
  }
  __syncthreads();
  float* stage_rows = ss + row0 * L::ldf;
  if (warp < nk) {
    stage<D>(dv, stage_rows);
    __syncwarp();
    store_rows<T, D>(stage_rows, row0, tk, pr.o2, b, h, 1.0f);
    __syncwarp();
    stage<D>(dk, stage_rows);
    __syncwarp();
    store_rows<T, D>(stage_rows, row0, tk, pr.o1, b, h, pr.scale);
  }
  if (warp < nq) {  // query row tile `warp`: dQ = scale dS K, from this warp's own dS rows
    __syncwarp();
    tile_times_rows<T, D, false>(dss, warp, nk, ks, dv);
    __syncwarp();
    stage<D>(dv, stage_rows);
    __syncwarp();
    store_rows<T, D>(stage_rows, row0, tq, pr.o0, b, h, pr.scale);
  }
}

template <typename Kernel>
void launch_tile(Kernel kernel, const AttnShape& s, size_t smem, const TileParams& pr, cudaStream_t stream) {
  // Every launch (attributes are per device): more than 48 KiB of shared memory, and the largest shared
  // carveout so that several heads' blocks share a multiprocessor.
  KOLO_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  KOLO_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared));
  kernel<<<static_cast<unsigned>(s.b * s.h), kThreads, smem, stream>>>(pr);
  KOLO_CUDA_CHECK_LAUNCH();
}

// Calls fn(T{}, integral_constant<D>) for a tile-path dtype and head size (attention_tile_fits holds).
template <typename Fn>
void by_type_and_head(DType t, int64_t dh, Fn&& fn) {
  auto by_head = [&](auto tag) {
    if (dh == 32) fn(tag, std::integral_constant<int, 32>{});
    else if (dh == 64) fn(tag, std::integral_constant<int, 64>{});
    else fn(tag, std::integral_constant<int, 128>{});
  };
  if (t == DType::BF16) by_head(__nv_bfloat16{});
  else by_head(__half{});
}

TileParams tile_params(const AttnShape& s, double scale, double dropout_p, uint64_t seed, uint64_t base) {
  TileParams pr{};
  pr.s = s;
  pr.scale = static_cast<float>(scale);
  pr.dropout_p = static_cast<float>(dropout_p);
  pr.keep_scale = dropout_p < 1.0 ? static_cast<float>(1.0 / (1.0 - dropout_p)) : 0.0f;
  pr.seed = seed;
  pr.base = base;
  return pr;
}

}  // namespace

bool attention_tile_fits(DType t, const AttnShape& s) {
  return (t == DType::BF16 || t == DType::F16) && (s.dh == 32 || s.dh == 64 || s.dh == 128) && s.tq >= 1 &&
         s.tq <= kAttentionTileMaxLen && s.tk >= 1 && s.tk <= kAttentionTileMaxLen && s.b * s.h >= 1 &&
         s.b * s.h < (int64_t{1} << 31);
}

void launch_attention_tile_fwd(DType t, const AttnShape& s, const AttnOperand& q, const AttnOperand& k,
                               const AttnOperand& v, const AttnOperand& mask, double scale, double dropout_p,
                               uint64_t seed, uint64_t base, const AttnOutput& out, void* lse, cudaStream_t stream) {
  KOLO_CHECK(attention_tile_fits(t, s), "scaled_dot_product_attention: the tile kernels do not take ",
             dtype_name(t), " Tq=", s.tq, " Tk=", s.tk, " Dh=", s.dh);
  TileParams pr = tile_params(s, scale, dropout_p, seed, base);
  pr.q = q;
  pr.k = k;
  pr.v = v;
  pr.mask = mask;
  pr.lse_out = static_cast<float*>(lse);
  pr.o0 = out;
  by_type_and_head(t, s.dh, [&](auto tag, auto d) {
    constexpr int D = decltype(d)::value;
    launch_tile(tile_fwd_kernel<decltype(tag), D>, s, Layout<D>::fwd_smem, pr, stream);
  });
}

void launch_attention_tile_bwd(DType t, const AttnShape& s, const AttnOperand& gout, const AttnOperand& q,
                               const AttnOperand& k, const AttnOperand& v, const AttnOperand& mask, const void* lse,
                               double scale, double dropout_p, uint64_t seed, uint64_t base, const AttnOutput& gq,
                               const AttnOutput& gk, const AttnOutput& gv, void* grad_scores, cudaStream_t stream) {
  KOLO_CHECK(attention_tile_fits(t, s), "scaled_dot_product_attention backward: the tile kernels do not take ",
             dtype_name(t), " Tq=", s.tq, " Tk=", s.tk, " Dh=", s.dh);
  TileParams pr = tile_params(s, scale, dropout_p, seed, base);
  pr.q = q;
  pr.k = k;
  pr.v = v;
  pr.mask = mask;
  pr.gout = gout;
  pr.lse_in = static_cast<const float*>(lse);
  pr.grad_scores = grad_scores;
  pr.o0 = gq;
  pr.o1 = gk;
  pr.o2 = gv;
  by_type_and_head(t, s.dh, [&](auto tag, auto d) {
    constexpr int D = decltype(d)::value;
    launch_tile(tile_bwd_kernel<decltype(tag), D>, s, Layout<D>::bwd_smem, pr, stream);
  });
}

}  // namespace kolo::cuda
