// CUDA attention (tile path, GEMM path and fused fallback, each forced in turn) against the CPU kernels at
// Transformer-big-like shapes: heads 16, head size 64, 64 tokens, q/k/v as head views of [B, T, H*Dh]
// projections, causal + key-padding masks, dropout; the tile path at its edge sizes; plus the op through
// autograd, the fused fallback on unaligned heads, and chunked heads.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "core/ops/cuda/attention_launch.h"
#include "core/ops/kernels/nn.h"
#include "core/ops/nn.h"
#include "tests/gpu/gpu_test_util.h"

namespace kolo {
namespace {

using testing::GpuTest;
using testing::random_cpu;
using testing::relative_error;

struct Case {
  int64_t b, h, tq, tk, dh;
  bool causal, padding;
  double dropout;
  DType t;
  int64_t offset = 0;  // elements before q's data, to misalign every head (forces the fused kernels)
};

std::string describe(const Case& c) {
  return std::string(dtype_name(c.t)) + " B=" + std::to_string(c.b) + " H=" + std::to_string(c.h) +
         " T=" + std::to_string(c.tq) + "x" + std::to_string(c.tk) + " dh=" + std::to_string(c.dh) +
         (c.causal ? " causal" : "") + (c.padding ? " padding" : "") + " p=" + std::to_string(c.dropout) +
         " offset=" + std::to_string(c.offset);
}

// Additive [B, 1, Tq, Tk] mask: causal (aligned to the last query) and/or the last b + 3 keys of batch b
// masked, expanded to the scores' shape as the op does.
Tensor make_mask(const Case& c) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> m(static_cast<size_t>(c.b * c.tq * c.tk), 0.0);
  for (int64_t b = 0; b < c.b; ++b)
    for (int64_t i = 0; i < c.tq; ++i)
      for (int64_t j = 0; j < c.tk; ++j) {
        double& v = m[static_cast<size_t>((b * c.tq + i) * c.tk + j)];
        if (c.causal && j > i + (c.tk - c.tq)) v = -inf;
        if (c.padding && j >= c.tk - (b + 3) && j > 0) v = -inf;
      }
  return Tensor::from_vector(m, {c.b, 1, c.tq, c.tk}).to(c.t);
}

// A [B, H, T, Dh] head view of a [B, T, H*Dh] tensor (as MultiheadAttention::split_heads), with `offset`
// leading elements in its storage.
Tensor heads_view(const Tensor& flat, const Case& c, int64_t t, int64_t offset) {
  const int64_t n = c.b * t * c.h * c.dh;
  Tensor store = Tensor::empty({n + offset}, flat.dtype(), flat.device());
  Tensor body = store.slice(0, offset, offset + n);
  body.copy_(flat.reshape({n}));
  return body.reshape({c.b, t, c.h, c.dh}).transpose(1, 2);
}

double tol(DType t) { return t == DType::F32 ? 1e-4 : t == DType::F16 ? 4e-3 : 2e-2; }

// The slots on GPU against the slots on CPU, forward and backward (the backward from the CPU forward's
// out and lse, so it is checked on its own).
void check_slots(const Case& c, Device gpu) {
  const int64_t d = c.h * c.dh;
  Tensor qf = random_cpu({c.b, c.tq, d}, c.t, -1.0, 1.0, 71), kf = random_cpu({c.b, c.tk, d}, c.t, -1.0, 1.0, 72);
  Tensor vf = random_cpu({c.b, c.tk, d}, c.t, -1.0, 1.0, 73), gf = random_cpu({c.b, c.tq, d}, c.t, -1.0, 1.0, 74);
  Tensor q = heads_view(qf, c, c.tq, 0), k = heads_view(kf, c, c.tk, 0), v = heads_view(vf, c, c.tk, 0);
  Tensor go = heads_view(gf, c, c.tq, 0);
  const Shape scores{c.b, c.h, c.tq, c.tk};
  const bool masked = c.causal || c.padding;
  Tensor mask = masked ? make_mask(c) : Tensor();
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.dh));
  const DType st = nn_stats_dtype(c.t);
  Tensor out = Tensor::empty({c.b, c.h, c.tq, c.dh}, c.t), lse = Tensor::empty({c.b, c.h, c.tq}, st);
  Tensor me = masked ? mask.expand(scores) : Tensor();
  attention_fwd_kernel()(Device::cpu())(q, k, v, me, scale, c.dropout, 5, 77, out, lse);
  Tensor gq = Tensor::empty(q.shape(), c.t), gk = Tensor::empty(k.shape(), c.t), gv = Tensor::empty(v.shape(), c.t);
  Tensor gs = masked ? Tensor::empty(scores, c.t) : Tensor();
  attention_bwd_kernel()(Device::cpu())(go, q, k, v, me, out, lse, scale, c.dropout, 5, 77, gq, gk, gv, gs);

  Tensor dq = heads_view(qf.to(gpu), c, c.tq, c.offset), dk = heads_view(kf.to(gpu), c, c.tk, 0);
  Tensor dv = heads_view(vf.to(gpu), c, c.tk, 0), dgo = heads_view(gf.to(gpu), c, c.tq, 0);
  Tensor dme = masked ? mask.to(gpu).expand(scores) : Tensor();
  Tensor dout = Tensor::empty(out.shape(), c.t, gpu), dlse = Tensor::empty(lse.shape(), st, gpu);
  attention_fwd_kernel()(gpu)(dq, dk, dv, dme, scale, c.dropout, 5, 77, dout, dlse);
  Tensor dgq = Tensor::empty(q.shape(), c.t, gpu), dgk = Tensor::empty(k.shape(), c.t, gpu);
  Tensor dgv = Tensor::empty(v.shape(), c.t, gpu), dgs = masked ? Tensor::empty(scores, c.t, gpu) : Tensor();
  Tensor out_in = out.to(gpu), lse_in = lse.to(gpu);
  attention_bwd_kernel()(gpu)(dgo, dq, dk, dv, dme, out_in, lse_in, scale, c.dropout, 5, 77, dgq, dgk, dgv, dgs);

  const std::string what = describe(c);
  EXPECT_LE(relative_error(dout, out), tol(c.t)) << what;
  EXPECT_LE(relative_error(dlse, lse), 1e-5) << what;
  EXPECT_LE(relative_error(dgq, gq), tol(c.t)) << what;
  EXPECT_LE(relative_error(dgk, gk), tol(c.t)) << what;
  EXPECT_LE(relative_error(dgv, gv), tol(c.t)) << what;
  if (masked) EXPECT_LE(relative_error(dgs, gs), tol(c.t)) << what;
}

// Forces one attention implementation for a scope (where its conditions hold; attention_launch.h).
class PathGuard {
 public:
  explicit PathGuard(cuda::AttentionPath p) { cuda::set_attention_path(p); }
  ~PathGuard() { cuda::set_attention_path(cuda::AttentionPath::Auto); }
  PathGuard(const PathGuard&) = delete;
  PathGuard& operator=(const PathGuard&) = delete;
};

const char* path_name(cuda::AttentionPath p) {
  switch (p) {
    case cuda::AttentionPath::Tile: return "tile";
    case cuda::AttentionPath::Gemm: return "gemm";
    case cuda::AttentionPath::Fused: return "fused";
    default: return "auto";
  }
}

TEST_F(GpuTest, AttentionTransformerBigShapesMatchCpuOnEveryPath) {
  for (cuda::AttentionPath path : {cuda::AttentionPath::Tile, cuda::AttentionPath::Gemm, cuda::AttentionPath::Fused}) {
    PathGuard guard(path);
    SCOPED_TRACE(path_name(path));
    for (DType t : {DType::BF16, DType::F32, DType::F16})
      for (double p : {0.0, 0.1}) {
        check_slots({4, 16, 64, 64, 64, true, true, p, t}, gpu());   // decoder self-attention
        check_slots({4, 16, 64, 37, 64, false, true, p, t}, gpu());  // cross-attention, padded source
      }
    check_slots({2, 16, 64, 64, 64, false, false, 0.0, DType::BF16}, gpu());
  }
}

// The tile kernels at the edges of what they take: one query or key, lengths off the 16-row tiles, more
// queries than keys and the reverse, head sizes 32 and 128, single heads and batches.
TEST_F(GpuTest, AttentionTilePathEdgeShapesMatchCpu) {
  PathGuard guard(cuda::AttentionPath::Tile);
  const Case cases[] = {
      {3, 2, 1, 1, 64, false, false, 0.0, DType::BF16},  {2, 3, 1, 40, 64, false, true, 0.1, DType::BF16},
      {2, 3, 17, 5, 32, true, false, 0.0, DType::F16},   {1, 4, 64, 1, 128, false, false, 0.0, DType::BF16},
      {2, 1, 33, 64, 128, true, true, 0.2, DType::BF16}, {1, 1, 48, 48, 32, true, true, 0.0, DType::F16},
      {5, 2, 64, 64, 128, true, true, 0.1, DType::F16},  {2, 8, 20, 63, 64, false, true, 0.0, DType::BF16},
  };
  for (const Case& c : cases) {
    ASSERT_TRUE(cuda::attention_tile_fits(c.t, {c.b, c.h, c.tq, c.tk, c.dh})) << describe(c);
    check_slots(c, gpu());
  }
}

TEST_F(GpuTest, AttentionUnalignedHeadsTakeTheFusedKernels) {
  for (DType t : {DType::BF16, DType::F32})
    check_slots({2, 4, 24, 24, 64, true, true, 0.1, t, /*offset=*/1}, gpu());
}

// 24 heads of 1024 x 1024 scores do not fit the GEMM path's scratch at once: heads run in chunks whose
// first head is not a multiple of H.
TEST_F(GpuTest, AttentionLongRowsRunInChunksOfHeads) {
  check_slots({2, 12, 1024, 1024, 32, true, false, 0.0, DType::BF16}, gpu());
}

// The op with autograd on both devices, heads split from [B, T, H*Dh] projections, mask requiring grad.
TEST_F(GpuTest, AttentionOpGradientsMatchCpu) {
  for (DType t : {DType::BF16, DType::F32, DType::F16}) {
    const Case c{3, 16, 64, 64, 64, true, true, 0.0, t};
    const int64_t d = c.h * c.dh;
    Tensor qf = random_cpu({c.b, c.tq, d}, t, -1.0, 1.0, 81), kf = random_cpu({c.b, c.tk, d}, t, -1.0, 1.0, 82);
    Tensor vf = random_cpu({c.b, c.tk, d}, t, -1.0, 1.0, 83), gf = random_cpu({c.b, c.tq, d}, t, -1.0, 1.0, 84);
    Tensor mask = make_mask(c);
    auto run = [&](Device dev) {
      Tensor q = qf.to(dev).detach().set_requires_grad(true), k = kf.to(dev).detach().set_requires_grad(true);
      Tensor v = vf.to(dev).detach().set_requires_grad(true), m = mask.to(dev).detach().set_requires_grad(true);
      auto split = [&](const Tensor& x) { return x.reshape({c.b, x.size(1), c.h, c.dh}).transpose(1, 2); };
      Tensor y = scaled_dot_product_attention(split(q), split(k), split(v), m, 0.0, 0.0, false, nullptr);
      y.transpose(1, 2).reshape({c.b, c.tq, d}).backward(gf.to(dev));
      return std::vector<Tensor>{y, q.grad(), k.grad(), v.grad(), m.grad()};
    };
    const std::vector<Tensor> want = run(Device::cpu()), got = run(gpu());
    const char* names[] = {"out", "grad q", "grad k", "grad v", "grad mask"};
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_LE(relative_error(got[i], want[i]), tol(t)) << dtype_name(t) << " " << names[i];
  }
}

}  // namespace
}  // namespace kolo
