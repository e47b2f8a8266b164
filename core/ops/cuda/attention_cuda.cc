// Attention on CUDA: picks the tile, GEMM or fused path per call and runs the GEMM path (scores and
// gradient products as tensor-core batched GEMMs over heads, softmax rows in attention_softmax.cu).
#include <algorithm>
#include <atomic>

#include "core/device/cuda/cuda_check.h"
#include "core/ops/cuda/attention_launch.h"
#include "core/ops/cuda/cuda_tensor.h"
#include "core/ops/cuda/head_gemm.h"
#include "core/util/env.h"

namespace kolo::cuda {

namespace {

// Scratch for the score-sized matrices of one chunk of heads: bounds the GEMM path's transient memory
// whatever the batch (Transformer-big, 4096 heads of 64x64, needs ~200 MiB in the backward: one chunk).
constexpr int64_t kScoreScratchBytes = int64_t{256} << 20;

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

bool aligned(int64_t bytes) { return bytes % 16 == 0; }

// A strided input readable by head_gemm: unit stride along the head dim, every head's base 16-byte aligned.
bool gemm_input_ok(const AttnOperand& o, const AttnShape& s, int64_t rows, int64_t esz) {
  if (s.dh > 1 && o.stride[3] != 1) return false;
  if (!aligned(static_cast<int64_t>(reinterpret_cast<uintptr_t>(o.data)))) return false;
  if (s.b > 1 && !aligned(o.stride[0] * esz)) return false;
  if (s.h > 1 && !aligned(o.stride[1] * esz)) return false;
  return rows <= 1 || o.stride[2] >= s.dh;
}

// An output head_gemm can write: the conditions of an input (outputs are fresh tensors, never aliased).
bool gemm_output_ok(const AttnOutput& o, const AttnShape& s, int64_t rows, int64_t esz) {
  return gemm_input_ok(o.as_input(), s, rows, esz);
}

int64_t row_pitch(const AttnOperand& o, const AttnShape& s, int64_t rows) {
  return rows > 1 ? o.stride[2] : std::max<int64_t>(s.dh, 1);
}

HeadPtrSpec input_spec(const AttnOperand& o, const AttnShape& s, int64_t esz, int64_t bh0) {
  return {static_cast<const char*>(o.data), o.stride[0] * esz, o.stride[1] * esz, s.h, bh0};
}

HeadPtrSpec scratch_spec(const void* p, int64_t matrix_bytes) {
  return {static_cast<const char*>(p), matrix_bytes, 0, 1, 0};
}

int current_device() {
  int dev = 0;
  KOLO_CUDA_CHECK(cudaGetDevice(&dev));
  return dev;
}

// Score-sized scratch of the GEMM path: f32 rows of pitch ld_s, dtype-t rows of pitch ld_p, both keeping
// every head's matrix 16-byte aligned.
struct ScoreLayout {
  int64_t ld_s, ld_p, s_bytes, p_bytes, heads_per_chunk;
  ScoreLayout(const AttnShape& s, int64_t esz, int f32_mats, int t_mats) {
    ld_s = round_up(s.tk, 4);
    ld_p = round_up(s.tk, 16 / std::min<int64_t>(esz, 16));
    s_bytes = s.tq * ld_s * 4;
    p_bytes = s.tq * ld_p * esz;
    const int64_t per_head = f32_mats * s_bytes + t_mats * p_bytes;
    heads_per_chunk = std::clamp<int64_t>(kScoreScratchBytes / std::max<int64_t>(per_head, 1), 1, s.b * s.h);
  }
};

bool use_gemm_path(DType t, const AttnShape& s) {
  if (attention_path() == AttentionPath::Fused) return false;
  return t != DType::F64 && s.tq >= 1 && s.tk >= 1 && s.tk <= kAttentionGemmMaxKeys && s.b * s.h >= 1;
}

// An operand the tile kernels move in 16-byte vectors: unit head-dim stride, every row 16-byte aligned.
bool tile_operand_ok(const AttnOperand& o, const AttnShape& s, int64_t rows, int64_t esz) {
  return o.stride[3] == 1 && aligned(static_cast<int64_t>(reinterpret_cast<uintptr_t>(o.data))) &&
         (s.b == 1 || aligned(o.stride[0] * esz)) && (s.h == 1 || aligned(o.stride[1] * esz)) &&
         (rows == 1 || aligned(o.stride[2] * esz));
}

bool use_tile_path(DType t, const AttnShape& s) {
  const AttentionPath p = attention_path();
  return (p == AttentionPath::Auto || p == AttentionPath::Tile) && attention_tile_fits(t, s);
}

AttentionPath path_from_env() {
  const std::optional<std::string> v = env::get("KOLO_ATTENTION_PATH");
  if (!v || v->empty() || *v == "auto") return AttentionPath::Auto;
  if (*v == "tile") return AttentionPath::Tile;
  if (*v == "gemm") return AttentionPath::Gemm;
  if (*v == "fused") return AttentionPath::Fused;
  KOLO_FAIL("KOLO_ATTENTION_PATH=", *v, ": expected auto, tile, gemm or fused");
}

std::atomic<AttentionPath>& path_setting() {
  static std::atomic<AttentionPath> path{path_from_env()};
  return path;
}

void** ptr_array(void* base, int64_t n, int index) { return static_cast<void**>(base) + index * n; }

}  // namespace

AttentionPath attention_path() { return path_setting().load(std::memory_order_relaxed); }

void set_attention_path(AttentionPath path) { path_setting().store(path, std::memory_order_relaxed); }

void launch_attention_fwd(DType t, const AttnShape& s, const AttnOperand& q, const AttnOperand& k,
                          const AttnOperand& v, const AttnOperand& mask, double scale, double dropout_p,
                          uint64_t seed, uint64_t base, const AttnOutput& out, void* lse, cudaStream_t stream) {
  const int64_t esz = static_cast<int64_t>(dtype_size(t));
  if (use_tile_path(t, s) && tile_operand_ok(q, s, s.tq, esz) && tile_operand_ok(k, s, s.tk, esz) &&
      tile_operand_ok(v, s, s.tk, esz) && tile_operand_ok(out.as_input(), s, s.tq, esz)) {
    launch_attention_tile_fwd(t, s, q, k, v, mask, scale, dropout_p, seed, base, out, lse, stream);
    return;
  }
  if (!use_gemm_path(t, s) || !gemm_input_ok(q, s, s.tq, esz) || !gemm_input_ok(k, s, s.tk, esz) ||
      !gemm_input_ok(v, s, s.tk, esz) || !gemm_output_ok(out, s, s.tq, esz)) {
    launch_attention_fused_fwd(t, s, q, k, v, mask, scale, dropout_p, seed, base, out, lse, stream);
    return;
  }
  const int dev = current_device();
  const ScoreLayout lay(s, esz, 1, 1);
  const int64_t n = lay.heads_per_chunk;
  DeviceScratch scores(dev, static_cast<size_t>(n * lay.s_bytes));
  DeviceScratch probs(dev, static_cast<size_t>(n * lay.p_bytes));
  DeviceScratch ptrs(dev, static_cast<size_t>(6 * n) * sizeof(void*));
  for (int64_t bh0 = 0; bh0 < s.b * s.h; bh0 += n) {
    const int64_t nbh = std::min(n, s.b * s.h - bh0);
    const HeadPtrSpec specs[6] = {input_spec(q, s, esz, bh0),           input_spec(k, s, esz, bh0),
                                  input_spec(v, s, esz, bh0),           input_spec(out.as_input(), s, esz, bh0),
                                  scratch_spec(scores.get(), lay.s_bytes), scratch_spec(probs.get(), lay.p_bytes)};
    launch_head_pointers(specs, 6, nbh, static_cast<void**>(ptrs.get()), stream);
    const HeadMatrix hq{ptr_array(ptrs.get(), nbh, 0), row_pitch(q, s, s.tq), t};
    const HeadMatrix hk{ptr_array(ptrs.get(), nbh, 1), row_pitch(k, s, s.tk), t};
    const HeadMatrix hv{ptr_array(ptrs.get(), nbh, 2), row_pitch(v, s, s.tk), t};
    const HeadMatrix ho{ptr_array(ptrs.get(), nbh, 3), row_pitch(out.as_input(), s, s.tq), t};
    const HeadMatrix hs{ptr_array(ptrs.get(), nbh, 4), lay.ld_s, DType::F32};
    const HeadMatrix hp{ptr_array(ptrs.get(), nbh, 5), lay.ld_p, t};
    head_gemm(dev, stream, nbh, s.tq, s.tk, s.dh, hq, false, hk, true, hs, scale, 0.0);
    launch_attention_softmax_fwd(t, s, bh0, nbh, static_cast<const float*>(scores.get()), lay.ld_s, mask,
                                 dropout_p, seed, base, probs.get(), lay.ld_p, static_cast<float*>(lse), stream);
    head_gemm(dev, stream, nbh, s.tq, s.dh, s.tk, hp, false, hv, false, ho, 1.0, 0.0);
  }
}

void launch_attention_bwd(DType t, const AttnShape& s, const AttnOperand& gout, const AttnOperand& q,
                          const AttnOperand& k, const AttnOperand& v, const AttnOperand& mask, const AttnOperand& out,
                          const void* lse, double scale, double dropout_p, uint64_t seed, uint64_t base,
                          const AttnOutput& gq, const AttnOutput& gk, const AttnOutput& gv, void* grad_scores,
                          void* delta, cudaStream_t stream) {
  const int64_t esz = static_cast<int64_t>(dtype_size(t));
  if (use_tile_path(t, s) && tile_operand_ok(q, s, s.tq, esz) && tile_operand_ok(k, s, s.tk, esz) &&
      tile_operand_ok(v, s, s.tk, esz) && tile_operand_ok(gout, s, s.tq, esz) &&
      tile_operand_ok(gq.as_input(), s, s.tq, esz) && tile_operand_ok(gk.as_input(), s, s.tk, esz) &&
      tile_operand_ok(gv.as_input(), s, s.tk, esz)) {
    launch_attention_tile_bwd(t, s, gout, q, k, v, mask, lse, scale, dropout_p, seed, base, gq, gk, gv, grad_scores,
                              stream);
    return;
  }
  if (!use_gemm_path(t, s) || !gemm_input_ok(q, s, s.tq, esz) || !gemm_input_ok(k, s, s.tk, esz) ||
      !gemm_input_ok(v, s, s.tk, esz) || !gemm_input_ok(gout, s, s.tq, esz) || !gemm_output_ok(gq, s, s.tq, esz) ||
      !gemm_output_ok(gk, s, s.tk, esz) || !gemm_output_ok(gv, s, s.tk, esz)) {
    launch_attention_fused_bwd(t, s, gout, q, k, v, mask, out, lse, scale, dropout_p, seed, base, gq, gk, gv,
                               grad_scores, delta, stream);
    return;
  }
  const int dev = current_device();
  const ScoreLayout lay(s, esz, 2, 2);
  const int64_t n = lay.heads_per_chunk;
  DeviceScratch scores(dev, static_cast<size_t>(n * lay.s_bytes));
  DeviceScratch dp(dev, static_cast<size_t>(n * lay.s_bytes));
  DeviceScratch probs(dev, static_cast<size_t>(n * lay.p_bytes));
  DeviceScratch dscores(dev, static_cast<size_t>(n * lay.p_bytes));
  DeviceScratch ptrs(dev, static_cast<size_t>(11 * n) * sizeof(void*));
  for (int64_t bh0 = 0; bh0 < s.b * s.h; bh0 += n) {
    const int64_t nbh = std::min(n, s.b * s.h - bh0);
    const HeadPtrSpec specs[11] = {input_spec(q, s, esz, bh0),
                                   input_spec(k, s, esz, bh0),
                                   input_spec(v, s, esz, bh0),
                                   input_spec(gout, s, esz, bh0),
                                   input_spec(gq.as_input(), s, esz, bh0),
                                   input_spec(gk.as_input(), s, esz, bh0),
                                   input_spec(gv.as_input(), s, esz, bh0),
                                   scratch_spec(scores.get(), lay.s_bytes),
                                   scratch_spec(dp.get(), lay.s_bytes),
                                   scratch_spec(probs.get(), lay.p_bytes),
                                   scratch_spec(dscores.get(), lay.p_bytes)};
    launch_head_pointers(specs, 11, nbh, static_cast<void**>(ptrs.get()), stream);
    const HeadMatrix hq{ptr_array(ptrs.get(), nbh, 0), row_pitch(q, s, s.tq), t};
    const HeadMatrix hk{ptr_array(ptrs.get(), nbh, 1), row_pitch(k, s, s.tk), t};
    const HeadMatrix hv{ptr_array(ptrs.get(), nbh, 2), row_pitch(v, s, s.tk), t};
    const HeadMatrix hgo{ptr_array(ptrs.get(), nbh, 3), row_pitch(gout, s, s.tq), t};
    const HeadMatrix hgq{ptr_array(ptrs.get(), nbh, 4), row_pitch(gq.as_input(), s, s.tq), t};
    const HeadMatrix hgk{ptr_array(ptrs.get(), nbh, 5), row_pitch(gk.as_input(), s, s.tk), t};
    const HeadMatrix hgv{ptr_array(ptrs.get(), nbh, 6), row_pitch(gv.as_input(), s, s.tk), t};
    const HeadMatrix hs{ptr_array(ptrs.get(), nbh, 7), lay.ld_s, DType::F32};
    const HeadMatrix hdp{ptr_array(ptrs.get(), nbh, 8), lay.ld_s, DType::F32};
    const HeadMatrix hp{ptr_array(ptrs.get(), nbh, 9), lay.ld_p, t};
    const HeadMatrix hds{ptr_array(ptrs.get(), nbh, 10), lay.ld_p, t};
    head_gemm(dev, stream, nbh, s.tq, s.tk, s.dh, hq, false, hk, true, hs, scale, 0.0);     // S = scale Q K^T
    head_gemm(dev, stream, nbh, s.tq, s.tk, s.dh, hgo, false, hv, true, hdp, 1.0, 0.0);     // dP = dO V^T
    launch_attention_softmax_bwd(t, s, bh0, nbh, static_cast<const float*>(scores.get()),
                                 static_cast<const float*>(dp.get()), lay.ld_s, mask, static_cast<const float*>(lse),
                                 dropout_p, seed, base, probs.get(), dscores.get(), lay.ld_p, grad_scores, stream);
    head_gemm(dev, stream, nbh, s.tk, s.dh, s.tq, hp, true, hgo, false, hgv, 1.0, 0.0);     // dV = P^T dO
    head_gemm(dev, stream, nbh, s.tq, s.dh, s.tk, hds, false, hk, false, hgq, scale, 0.0);  // dQ = scale dS K
    head_gemm(dev, stream, nbh, s.tk, s.dh, s.tq, hds, true, hq, false, hgk, scale, 0.0);   // dK = scale dS^T Q
  }
}

}  // namespace kolo::cuda
