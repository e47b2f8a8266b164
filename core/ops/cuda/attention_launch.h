// Launchers of scaled dot-product attention on raw strided buffers. Layouts follow core/ops/kernels/nn.h:
// q [B, H, Tq, Dh], k/v [B, H, Tk, Dh] with any element strides, an optional additive mask already expanded
// to [B, H, Tq, Tk] (stride-0 views), outputs out/gq/gk/gv with their own strides (AttnOutput), lse and
// grad_scores contiguous. Head sizes up to 256.
//
// Three implementations sit behind launch_attention_fwd/bwd (attention_cuda.cc picks one per call):
// - Tile path (bf16/f16, Tq and Tk <= kAttentionTileMaxLen, head size 32, 64 or 128, 16-byte aligned rows):
//   tensor-core kernels (attention_tile.cu) that keep one head's operands and scores in shared memory, so a
//   call reads q, k, v (and gout) once and writes only its outputs. Transformer training sequences.
// - GEMM path (half and f32 inputs, Tk <= kAttentionGemmMaxKeys, unit-stride head dims, 16-byte aligned
//   heads): the scores of a chunk of heads are materialised in f32 by tensor-core batched GEMMs
//   (head_gemm.h), a row kernel applies mask, softmax and dropout (attention_softmax.cu), and the products
//   with V (forward) or the five gradient products (backward) are batched GEMMs again. The backward
//   recomputes the scores from q and k and the probabilities from the saved logsumexp, so nothing but
//   out and lse is kept between the passes, as on the fused path.
// - Fused path (attention.cu, everything else, f64 in particular): flash-attention-style kernels on CUDA
//   cores that never store the [Tq, Tk] matrix.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/tensor/dtype.h"

namespace kolo::cuda {

// A 4-D operand: base pointer and element strides; data == nullptr means "absent" (the mask).
struct AttnOperand {
  const void* data = nullptr;
  int64_t stride[4] = {0, 0, 0, 0};
};

// A 4-D output ([B, H, T, Dh]) with element strides: contiguous, or the head-interleaved [B, T, H, Dh]
// memory of a projection viewed as heads, which spares the callers a transposing copy.
struct AttnOutput {
  void* data = nullptr;
  int64_t stride[4] = {0, 0, 0, 0};
  AttnOperand as_input() const { return {data, {stride[0], stride[1], stride[2], stride[3]}}; }
};

struct AttnShape {
  int64_t b, h, tq, tk, dh;
};

constexpr int64_t kAttentionMaxHead = 256;
// Longest key row the GEMM path's softmax kernels keep in registers (32 values per lane).
constexpr int64_t kAttentionGemmMaxKeys = 1024;
// Longest query or key sequence of the tile path (one block holds a head's [T, T] scores).
constexpr int64_t kAttentionTileMaxLen = 64;

// Which implementation runs. Auto: the tile path where it applies, else the GEMM path where it applies, else
// the fused kernels. A forced path runs where its conditions hold and falls back as Auto elsewhere (Fused
// holds everywhere). Process-wide; the initial value comes from KOLO_ATTENTION_PATH (auto, tile, gemm,
// fused), so benchmarks and tests can compare the paths on the same inputs.
enum class AttentionPath { Auto, Tile, Gemm, Fused };
AttentionPath attention_path();
void set_attention_path(AttentionPath path);

// out [B, H, Tq, Dh] (any strides) and lse [B, H, Tq] (statistics dtype, contiguous).
void launch_attention_fwd(DType t, const AttnShape& s, const AttnOperand& q, const AttnOperand& k,
                          const AttnOperand& v, const AttnOperand& mask, double scale, double dropout_p,
                          uint64_t seed, uint64_t base, const AttnOutput& out, void* lse, cudaStream_t stream);

// gq/gk/gv with their own strides; out as the forward wrote it; grad_scores contiguous [B, H, Tq, Tk] or
// null; `delta` is device scratch of B*H*Tq statistics-dtype elements (rowsum(gout * out)).
void launch_attention_bwd(DType t, const AttnShape& s, const AttnOperand& gout, const AttnOperand& q,
                          const AttnOperand& k, const AttnOperand& v, const AttnOperand& mask, const AttnOperand& out,
                          const void* lse, double scale, double dropout_p, uint64_t seed, uint64_t base,
                          const AttnOutput& gq, const AttnOutput& gk, const AttnOutput& gv, void* grad_scores,
                          void* delta, cudaStream_t stream);

// The fused kernels (attention.cu), same contracts as above.
void launch_attention_fused_fwd(DType t, const AttnShape& s, const AttnOperand& q, const AttnOperand& k,
                                const AttnOperand& v, const AttnOperand& mask, double scale, double dropout_p,
                                uint64_t seed, uint64_t base, const AttnOutput& out, void* lse, cudaStream_t stream);
void launch_attention_fused_bwd(DType t, const AttnShape& s, const AttnOperand& gout, const AttnOperand& q,
                                const AttnOperand& k, const AttnOperand& v, const AttnOperand& mask,
                                const AttnOperand& out, const void* lse, double scale, double dropout_p, uint64_t seed,
                                uint64_t base, const AttnOutput& gq, const AttnOutput& gk, const AttnOutput& gv,
                                void* grad_scores, void* delta, cudaStream_t stream);

// The tile kernels (attention_tile.cu): dtype and sizes they take (the caller checks the 16-byte alignment
// of every q/k/v/gout/output row and head), and the launches, same contracts as above (the backward
// recomputes delta itself, so it takes no scratch).
bool attention_tile_fits(DType t, const AttnShape& s);
void launch_attention_tile_fwd(DType t, const AttnShape& s, const AttnOperand& q, const AttnOperand& k,
                               const AttnOperand& v, const AttnOperand& mask, double scale, double dropout_p,
                               uint64_t seed, uint64_t base, const AttnOutput& out, void* lse, cudaStream_t stream);
void launch_attention_tile_bwd(DType t, const AttnShape& s, const AttnOperand& gout, const AttnOperand& q,
                               const AttnOperand& k, const AttnOperand& v, const AttnOperand& mask, const void* lse,
                               double scale, double dropout_p, uint64_t seed, uint64_t base, const AttnOutput& gq,
                               const AttnOutput& gk, const AttnOutput& gv, void* grad_scores, cudaStream_t stream);

// Row kernels of the GEMM path (attention_softmax.cu) over the score rows of heads [bh0, bh0 + nbh) of
// one call. Row r of the chunk is query row r % Tq of head bh0 + r / Tq; matrices are row-major with
// leading dimensions ld_s (f32 scores) and ld_p (probabilities in dtype t), Tq rows per head. The dropout
// counter of score (bh, i, j) is base + (bh * Tq + i) * Tk + j, as on the CPU and the fused path.

// scores already hold scale * q.k; writes p_drop = dropout(softmax(scores + mask)) in dtype t and
// lse (statistics dtype, indexed by global row) = logsumexp of each masked row, -inf (and p = 0) for a row
// masked everywhere.
void launch_attention_softmax_fwd(DType t, const AttnShape& s, int64_t bh0, int64_t nbh, const float* scores,
                                  int64_t ld_s, const AttnOperand& mask, double dropout_p, uint64_t seed,
                                  uint64_t base, void* p_drop, int64_t ld_p, float* lse, cudaStream_t stream);

// From recomputed scores, dp = gout @ v^T (f32, ld_s) and the forward's lse: p = exp(scores + mask - lse),
// writes p_drop (dtype t, ld_p) and ds = p * (keep * dp - sum_j p_j keep_j dp_j) (dtype t, ld_p), and
// grad_scores (dtype t, contiguous [B, H, Tq, Tk], global) when not null.
void launch_attention_softmax_bwd(DType t, const AttnShape& s, int64_t bh0, int64_t nbh, const float* scores,
                                  const float* dp, int64_t ld_s, const AttnOperand& mask, const float* lse,
                                  double dropout_p, uint64_t seed, uint64_t base, void* p_drop, void* ds,
                                  int64_t ld_p, void* grad_scores, cudaStream_t stream);

// Per-head base addresses of up to kHeadPtrOperands operands: with g = first_o + i,
// ptrs[o * n + i] = base_o + (g / h_o) * sb_o + (g % h_o) * sh_o (byte strides), for i in [0, n).
constexpr int kHeadPtrOperands = 12;
struct HeadPtrSpec {
  const char* base;
  int64_t sb, sh, h, first;
};
void launch_head_pointers(const HeadPtrSpec* specs, int count, int64_t n, void** ptrs, cudaStream_t stream);

}  // namespace kolo::cuda
