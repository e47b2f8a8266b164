// The CUDA kernels of the sequence-model slots (softmax, cross-entropy, layer norm, dropout, embedding,
// fused attention) against the CPU kernels of the same slots on random inputs, per dtype.
#include <gtest/gtest.h>

#include <limits>

#include "core/device/device_backend.h"
#include "core/ops/kernels/nn.h"
#include "tests/gpu/gpu_test_util.h"

namespace kolo {
namespace {

using testing::GpuTest;
using testing::random_cpu;
using testing::relative_error;

const DType kFloat[] = {DType::F32, DType::F64, DType::BF16, DType::F16};

// Half-precision outputs are rounded from f32 results computed in different orders: allow a few ulps.
double tol(DType t) {
  switch (t) {
    case DType::F64: return 1e-10;
    case DType::F32: return 2e-5;
    case DType::BF16: return 2e-2;
    default: return 4e-3;
  }
}

Tensor gpu_copy(const Tensor& t) { return t.to(Device::cuda(0)); }

TEST_F(GpuTest, SoftmaxAndLogSoftmaxForwardBackward) {
  for (DType t : kFloat)
    for (int64_t n : {7, 64, 1000, 3001})
      for (bool log : {false, true}) {
        Tensor x = random_cpu({13, n}, t, -4.0, 4.0, 11);
        Tensor gy = random_cpu({13, n}, t, -1.0, 1.0, 12);
        Tensor y = Tensor::empty(x.shape(), t), gx = Tensor::empty(x.shape(), t);
        softmax_fwd_kernel()(Device::cpu())(x, y, log);
        softmax_bwd_kernel()(Device::cpu())(gy, y, gx, log);
        Tensor dx = gpu_copy(x), dgy = gpu_copy(gy), dyo = Tensor::empty(x.shape(), t, gpu()),
               dgx = Tensor::empty(x.shape(), t, gpu());
        softmax_fwd_kernel()(gpu())(dx, dyo, log);
        Tensor y_in = gpu_copy(y);  // the backward sees the same y on both devices
        softmax_bwd_kernel()(gpu())(dgy, y_in, dgx, log);
        const std::string what = std::string(dtype_name(t)) + " n=" + std::to_string(n) + (log ? " log" : "");
        EXPECT_LE(relative_error(dyo, y), tol(t)) << what;
        EXPECT_LE(relative_error(dgx, gx), tol(t)) << what;
      }
}

TEST_F(GpuTest, CrossEntropyLabelSmoothingWithIgnoredRows) {
  for (DType t : kFloat)
    for (int64_t c : {5, 512, 5000}) {
      const int64_t n = 37;
      Tensor z = random_cpu({n, c}, t, -3.0, 3.0, 21);
      std::vector<int64_t> tv(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) tv[static_cast<size_t>(i)] = i % 5 == 0 ? -100 : (i * 7919) % c;
      Tensor tg = Tensor::from_vector(tv, {n});
      const DType st = nn_stats_dtype(t);
      // The loss and its gradient are in the statistics dtype (f32 for half logits), as the op makes them.
      Tensor loss = Tensor::empty({}, st), lse = Tensor::empty({n}, st), gz = Tensor::empty({n, c}, t);
      Tensor gl = Tensor::from_vector(std::vector<double>{1.5}, {}).to(st);
      cross_entropy_fwd_kernel()(Device::cpu())(z, tg, 0.1, -100, loss, lse);
      cross_entropy_bwd_kernel()(Device::cpu())(gl, z, tg, lse, 0.1, -100, gz);
      Tensor dz = gpu_copy(z), dtg = gpu_copy(tg), dgl = gpu_copy(gl);
      Tensor dloss = Tensor::empty({}, st, gpu()), dlse = Tensor::empty({n}, st, gpu()),
             dgz = Tensor::empty({n, c}, t, gpu());
      cross_entropy_fwd_kernel()(gpu())(dz, dtg, 0.1, -100, dloss, dlse);
      cross_entropy_bwd_kernel()(gpu())(dgl, dz, dtg, dlse, 0.1, -100, dgz);
      const std::string what = std::string(dtype_name(t)) + " c=" + std::to_string(c);
      EXPECT_LE(relative_error(dloss, loss), tol(t)) << what;
      EXPECT_LE(relative_error(dlse, lse), t == DType::F64 ? 1e-12 : 1e-5) << what;
      EXPECT_LE(relative_error(dgz, gz), tol(t)) << what;
    }
}

TEST_F(GpuTest, CrossEntropyRejectsOutOfRangeTargets) {
  Tensor z = Tensor::zeros({2, 4}, DType::F32, gpu());
  Tensor tg = Tensor::from_vector(std::vector<int64_t>{1, 4}, {2}).to(gpu());
  Tensor loss = Tensor::empty({}, DType::F32, gpu()), lse = Tensor::empty({2}, DType::F32, gpu());
  // Counted on the device, thrown at the next host synchronisation (here: reading the loss), once.
  try {
    cross_entropy_fwd_kernel()(gpu())(z, tg, 0.0, -100, loss, lse);
    (void)loss.item();
    ADD_FAILURE() << "no error for a target out of range";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cross_entropy: targets out of range [0, 4)"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW((void)loss.item());
}

TEST_F(GpuTest, LayerNormForwardBackwardWithAndWithoutAffine) {
  for (DType t : kFloat)
    for (int64_t d : {24, 768, 1000, 4100})
      for (bool affine : {true, false}) {
        const int64_t rows = 300;
        Tensor x = random_cpu({rows, d}, t, -2.0, 3.0, 31);
        Tensor gy = random_cpu({rows, d}, t, -1.0, 1.0, 32);
        Tensor w = affine ? random_cpu({d}, t, 0.5, 1.5, 33) : Tensor();
        Tensor b = affine ? random_cpu({d}, t, -0.5, 0.5, 34) : Tensor();
        const DType st = nn_stats_dtype(t);
        Tensor y = Tensor::empty(x.shape(), t), mean = Tensor::empty({rows}, st), rstd = Tensor::empty({rows}, st);
        Tensor gx = Tensor::empty(x.shape(), t), gw = Tensor::empty({d}, t), gb = Tensor::empty({d}, t);
        layer_norm_fwd_kernel()(Device::cpu())(x, w, b, 1e-5, y, mean, rstd);
        layer_norm_bwd_kernel()(Device::cpu())(gy, x, w, mean, rstd, gx, gw, gb);
        Tensor dx = gpu_copy(x), dgy = gpu_copy(gy), dw = affine ? gpu_copy(w) : Tensor(),
               db = affine ? gpu_copy(b) : Tensor();
        Tensor dy = Tensor::empty(x.shape(), t, gpu()), dmean = Tensor::empty({rows}, st, gpu()),
               drstd = Tensor::empty({rows}, st, gpu());
        Tensor dgx = Tensor::empty(x.shape(), t, gpu()), dgw = Tensor::empty({d}, t, gpu()),
               dgb = Tensor::empty({d}, t, gpu());
        layer_norm_fwd_kernel()(gpu())(dx, dw, db, 1e-5, dy, dmean, drstd);
        layer_norm_bwd_kernel()(gpu())(dgy, dx, dw, dmean, drstd, dgx, dgw, dgb);
        const std::string what = std::string(dtype_name(t)) + " d=" + std::to_string(d) + (affine ? " affine" : "");
        EXPECT_LE(relative_error(dy, y), tol(t)) << what;
        EXPECT_LE(relative_error(dmean, mean), t == DType::F64 ? 1e-12 : 1e-5) << what;
        EXPECT_LE(relative_error(drstd, rstd), t == DType::F64 ? 1e-12 : 1e-5) << what;
        EXPECT_LE(relative_error(dgx, gx), tol(t)) << what;
        EXPECT_LE(relative_error(dgw, gw), tol(t)) << what;
        EXPECT_LE(relative_error(dgb, gb), tol(t)) << what;
      }
}

// Plain dropout, the fused residual form (residual + dropout(x)) and dropout(relu(x)) with its backward, the
// vector path ({1000, 32}: 16-byte
// aligned rows) and the scalar tail ({1001, 33}).
TEST_F(GpuTest, DropoutMatchesCpuMaskExactly) {
  for (DType t : kFloat)
    for (double p : {0.0, 0.1, 0.5, 1.0})
      for (const Shape& shape : {Shape{1001, 33}, Shape{1000, 32}})
        for (bool with_residual : {false, true})
        for (bool relu : {false, true}) {
          Tensor x = random_cpu(shape, t, -1.0, 1.0, 41);
          Tensor r = with_residual ? random_cpu(shape, t, -1.0, 1.0, 42) : Tensor();
          Tensor y = Tensor::empty(x.shape(), t);
          dropout_apply_kernel()(Device::cpu())(x, r, relu, p, 1234, 777, y);
          Tensor dx = gpu_copy(x), dr = with_residual ? gpu_copy(r) : Tensor();
          Tensor dy = Tensor::empty(x.shape(), t, gpu());
          dropout_apply_kernel()(gpu())(dx, dr, relu, p, 1234, 777, dy);
          const std::string what = std::string(dtype_name(t)) + " p=" + std::to_string(p) +
                                   " residual=" + std::to_string(with_residual) + " relu=" + std::to_string(relu) +
                                   " " + shape_str(shape);
          EXPECT_LE(relative_error(dy, y), t == DType::F64 ? 0.0 : 1e-7) << what;
          if (!relu || with_residual) continue;
          // dropout(relu(x))'s backward from y alone.
          Tensor g = random_cpu(shape, t, -1.0, 1.0, 43), gx = Tensor::empty(shape, t);
          relu_dropout_backward_kernel()(Device::cpu())(g, y, p, gx);
          Tensor dg = gpu_copy(g), dgx = Tensor::empty(shape, t, gpu());
          relu_dropout_backward_kernel()(gpu())(dg, dy, p, dgx);
          EXPECT_LE(relative_error(dgx, gx), t == DType::F64 ? 0.0 : 1e-7) << what << " backward";
        }
}

TEST_F(GpuTest, EmbeddingGatherContiguousStridedAndBadIds) {
  for (DType t : {DType::F32, DType::BF16, DType::F64})
    for (int64_t d : {1, 3, 64, 301}) {
      Tensor w = random_cpu({50, d}, t, -1.0, 1.0, 51);
      std::vector<int64_t> ids{0, 49, 3, 3, 17, 8, 49};
      Tensor idx = Tensor::from_vector(ids, {7});
      for (bool transposed : {false, true}) {
        Tensor wc = transposed ? w.transpose(0, 1).contiguous().transpose(0, 1) : w;
        Tensor want = Tensor::empty({7, d}, t);
        embedding_gather_kernel()(Device::cpu())(wc, idx, want);
        Tensor dw = transposed ? gpu_copy(w.transpose(0, 1).contiguous()).transpose(0, 1) : gpu_copy(w);
        Tensor got = Tensor::empty({7, d}, t, gpu());
        embedding_gather_kernel()(gpu())(dw, gpu_copy(idx), got);
        EXPECT_EQ(relative_error(got, want), 0.0) << dtype_name(t) << " d=" << d << (transposed ? " strided" : "");
      }
    }
  Tensor w = Tensor::zeros({5, 4}, DType::F32, gpu());
  Tensor bad = Tensor::from_vector(std::vector<int64_t>{1, 5}, {2}).to(gpu());
  Tensor out = Tensor::empty({2, 4}, DType::F32, gpu());
  EXPECT_THROW(
      {
        embedding_gather_kernel()(gpu())(w, bad, out);
        device_backend(DeviceType::CUDA).synchronize(0);
      },
      Error);
  EXPECT_NO_THROW(device_backend(DeviceType::CUDA).synchronize(0));
}

struct AttnCase {
  int64_t b, h, tq, tk, dh;
  int mask;  // 0 none, 1 causal, 2 key padding (last keys of batch 1 masked), 3 a fully-masked query row
  double dropout;
};

// Additive mask [B, H, Tq, Tk] as a broadcast view, like the op layer hands it to the kernel.
Tensor make_mask(const AttnCase& c, DType t) {
  if (c.mask == 0) return Tensor();
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> m(static_cast<size_t>(c.b * c.tq * c.tk), 0.0);
  for (int64_t b = 0; b < c.b; ++b)
    for (int64_t i = 0; i < c.tq; ++i)
      for (int64_t j = 0; j < c.tk; ++j) {
        double& v = m[static_cast<size_t>((b * c.tq + i) * c.tk + j)];
        if (c.mask == 1 && j > i + (c.tk - c.tq)) v = -inf;
        if (c.mask == 2 && b == 1 && j >= c.tk - 5) v = -inf;
        if (c.mask == 3 && i == 2) v = -inf;
      }
  return Tensor::from_vector(m, {c.b, 1, c.tq, c.tk}).to(t).expand({c.b, c.h, c.tq, c.tk});
}

TEST_F(GpuTest, FusedAttentionForwardBackwardMasksDropoutStrides) {
  const AttnCase cases[] = {{2, 3, 17, 17, 16, 0, 0.0},  {2, 2, 64, 64, 64, 1, 0.0},  {2, 2, 33, 70, 40, 2, 0.0},
                            {1, 2, 8, 40, 128, 3, 0.0},  {2, 2, 40, 40, 64, 1, 0.2},  {1, 1, 5, 9, 200, 0, 0.0}};
  for (DType t : kFloat)
    for (const AttnCase& c : cases) {
      // q is a transposed view ([B, T, H, Dh] storage) to exercise strided operands.
      Tensor q = random_cpu({c.b, c.tq, c.h, c.dh}, t, -1.0, 1.0, 61).transpose(1, 2);
      Tensor k = random_cpu({c.b, c.h, c.tk, c.dh}, t, -1.0, 1.0, 62);
      Tensor v = random_cpu({c.b, c.h, c.tk, c.dh}, t, -1.0, 1.0, 63);
      Tensor go = random_cpu({c.b, c.h, c.tq, c.dh}, t, -1.0, 1.0, 64);
      Tensor mask = make_mask(c, t);
      const double scale = 1.0 / std::sqrt(static_cast<double>(c.dh));
      const DType st = nn_stats_dtype(t);
      Tensor out = Tensor::empty({c.b, c.h, c.tq, c.dh}, t), lse = Tensor::empty({c.b, c.h, c.tq}, st);
      attention_fwd_kernel()(Device::cpu())(q, k, v, mask, scale, c.dropout, 9, 100, out, lse);
      Tensor gq = Tensor::empty(q.shape(), t), gk = Tensor::empty(k.shape(), t), gv = Tensor::empty(v.shape(), t);
      Tensor gs = c.mask ? Tensor::empty({c.b, c.h, c.tq, c.tk}, t) : Tensor();
      attention_bwd_kernel()(Device::cpu())(go, q, k, v, mask, out, lse, scale, c.dropout, 9, 100, gq, gk, gv, gs);

      Tensor dq = gpu_copy(q.transpose(1, 2).contiguous()).transpose(1, 2), dk = gpu_copy(k), dv = gpu_copy(v),
             dgo = gpu_copy(go);
      Tensor dmask = c.mask ? gpu_copy(mask.slice(1, 0, 1).contiguous()).expand(mask.shape()) : Tensor();
      Tensor dout = Tensor::empty(out.shape(), t, gpu()), dlse = Tensor::empty(lse.shape(), st, gpu());
      attention_fwd_kernel()(gpu())(dq, dk, dv, dmask, scale, c.dropout, 9, 100, dout, dlse);
      Tensor dgq = Tensor::empty(q.shape(), t, gpu()), dgk = Tensor::empty(k.shape(), t, gpu()),
             dgv = Tensor::empty(v.shape(), t, gpu());
      Tensor dgs = c.mask ? Tensor::empty(gs.shape(), t, gpu()) : Tensor();
      // The backward reads the CPU forward's out/lse, so it is checked on its own.
      Tensor out_in = gpu_copy(out), lse_in = gpu_copy(lse);
      attention_bwd_kernel()(gpu())(dgo, dq, dk, dv, dmask, out_in, lse_in, scale, c.dropout, 9, 100, dgq, dgk, dgv,
                                    dgs);
      const std::string what = std::string(dtype_name(t)) + " T=" + std::to_string(c.tq) + "x" +
                               std::to_string(c.tk) + " dh=" + std::to_string(c.dh) + " mask=" +
                               std::to_string(c.mask) + " p=" + std::to_string(c.dropout);
      const double at = t == DType::F32 ? 1e-4 : tol(t);
      EXPECT_LE(relative_error(dout, out), at) << what;
      EXPECT_LE(relative_error(dlse, lse), t == DType::F64 ? 1e-12 : 1e-5) << what;
      EXPECT_LE(relative_error(dgq, gq), at) << what;
      EXPECT_LE(relative_error(dgk, gk), at) << what;
      EXPECT_LE(relative_error(dgv, gv), at) << what;
      if (c.mask) EXPECT_LE(relative_error(dgs, gs), at) << what;
    }
}

}  // namespace
}  // namespace kolo
