// Training-mode batch norm on the GPU against the CPU op: the channels-last kernels (bn_nhwc.cu) on vector and
// scalar paths (channel counts divisible by the vector width or not), many row blocks, running statistics,
// and the cuDNN path for NCHW; values, running statistics and all three gradients. The fused batch norm
// (+ residual) + ReLU ops against the CPU's, on the fused channels-last kernels and the NCHW fallback.
#include <gtest/gtest.h>

#include "core/ops/batch_norm_act.h"
#include "core/ops/conv.h"
#include "tests/gpu/gpu_test_util.h"

namespace kolo::testing {
namespace {

class GpuBatchNorm : public GpuTest {};

struct BnCase {
  Shape shape;  // channels last: [n, h, w, c]; otherwise [n, c, h, w]
  bool channels_last;
};

// The fused forms' cases. The last has rows enough (1,085,568 x 8 channels) that every pass's threads go round
// their row loop more than once, ending in a partial batch of row loads; it runs in bf16 only (f32's
// tolerances are below the rounding of f32 sums over a million rows).
const BnCase kFusedCases[] = {
    {{4, 9, 11, 64}, true}, {{3, 5, 7, 5}, true}, {{2, 6, 5, 7}, false}, {{16, 257, 264, 8}, true}};
bool fused_case_runs_in(DType t, const BnCase& bc) { return t != DType::F32 || bc.shape[1] <= 100; }

TEST_F(GpuBatchNorm, TrainingMatchesCpu) {
  const BnCase cases[] = {{{4, 17, 19, 64}, true},  {{3, 9, 11, 7}, true},  {{2, 5, 5, 24}, true},
                          {{64, 28, 28, 16}, true}, {{2, 3, 7, 40}, true},  {{3, 8, 9, 11}, false}};
  for (DType t : {DType::F32, DType::BF16, DType::F16}) {
    for (const BnCase& bc : cases) {
      const int64_t c = bc.channels_last ? bc.shape.back() : bc.shape[1];
      const std::string what = std::string(dtype_name(t)) + " " + shape_str(bc.shape) +
                               (bc.channels_last ? " nhwc" : " nchw");
      // A mean far from zero checks the variance against cancellation.
      Tensor x = random_cpu(bc.shape, t, 2.0, 4.0, 11);
      Tensor w = random_cpu({c}, t, 0.5, 1.5, 12), b = random_cpu({c}, t, -0.5, 0.5, 13);
      Tensor rm = random_cpu({c}, t, -0.2, 0.2, 14), rv = random_cpu({c}, t, 0.5, 2.0, 15);
      Tensor rmg = rm.to(gpu()), rvg = rv.to(gpu());
      // The CPU reference runs in f64 from the same (rounded) inputs.
      Tensor xc = x.to(DType::F64).set_requires_grad(true), wc = w.to(DType::F64).set_requires_grad(true),
             bcpu = b.to(DType::F64).set_requires_grad(true);
      Tensor rmc = rm.to(DType::F64), rvc = rv.to(DType::F64);
      Tensor xg = x.to(gpu()).set_requires_grad(true), wg = w.to(gpu()).set_requires_grad(true),
             bg = b.to(gpu()).set_requires_grad(true);
      Tensor yc = batch_norm(xc, wc, bcpu, rmc, rvc, true, 0.1, 1e-5, bc.channels_last);
      Tensor yg = batch_norm(xg, wg, bg, rmg, rvg, true, 0.1, 1e-5, bc.channels_last);
      const double tol = t == DType::F32 ? 1e-5 : tolerance(t);
      EXPECT_LE(relative_error(yg.to(DType::F64), yc), tol) << what << " y";
      EXPECT_LE(relative_error(rmg.to(DType::F64), rmc), tol) << what << " running mean";
      EXPECT_LE(relative_error(rvg.to(DType::F64), rvc), tol) << what << " running var";
      Tensor gy = random_cpu(yc.shape(), t, -1.0, 1.0, 16);
      yc.backward(gy.to(DType::F64));
      yg.backward(gy.to(gpu()));
      // dx is a difference of nearly equal terms: allow a few roundings of the half types.
      const double gtol = t == DType::F32 ? 1e-4 : 4 * tolerance(t);
      EXPECT_LE(relative_error(xg.grad().to(DType::F64), xc.grad()), gtol) << what << " dx";
      EXPECT_LE(relative_error(wg.grad().to(DType::F64), wc.grad()), gtol) << what << " dw";
      EXPECT_LE(relative_error(bg.grad().to(DType::F64), bcpu.grad()), gtol) << what << " db";
    }
  }
}

TEST_F(GpuBatchNorm, FusedReluAndResidualMatchCpu) {
  for (DType t : {DType::F32, DType::BF16}) {
    for (const BnCase& bc : kFusedCases) {
      if (!fused_case_runs_in(t, bc)) continue;
      for (bool with_residual : {false, true}) {
        const int64_t c = bc.channels_last ? bc.shape.back() : bc.shape[1];
        const std::string what = std::string(dtype_name(t)) + " " + shape_str(bc.shape) +
                                 (bc.channels_last ? " nhwc" : " nchw") + (with_residual ? " +residual" : "");
        Tensor x = random_cpu(bc.shape, t, -1.0, 1.0, 31), r = random_cpu(bc.shape, t, -1.0, 1.0, 32);
        Tensor w = random_cpu({c}, t, 0.5, 1.5, 33), b = random_cpu({c}, t, -0.5, 0.5, 34);
        Tensor rmc = Tensor::zeros({c}, t), rvc = Tensor::ones({c}, t);
        Tensor rmg = rmc.to(gpu()), rvg = rvc.to(gpu());
        Tensor xc = x.detach().set_requires_grad(true), wc = w.detach().set_requires_grad(true),
               bcpu = b.detach().set_requires_grad(true), rc = r.detach().set_requires_grad(true);
        Tensor xg = x.to(gpu()).set_requires_grad(true), wg = w.to(gpu()).set_requires_grad(true),
               bg = b.to(gpu()).set_requires_grad(true), rg = r.to(gpu()).set_requires_grad(true);
        Tensor yc = with_residual ? batch_norm_add_relu(xc, rc, wc, bcpu, rmc, rvc, true, 0.1, 1e-5, bc.channels_last)
                                  : batch_norm_relu(xc, wc, bcpu, rmc, rvc, true, 0.1, 1e-5, bc.channels_last);
        Tensor yg = with_residual ? batch_norm_add_relu(xg, rg, wg, bg, rmg, rvg, true, 0.1, 1e-5, bc.channels_last)
                                  : batch_norm_relu(xg, wg, bg, rmg, rvg, true, 0.1, 1e-5, bc.channels_last);
        const double tol = t == DType::F32 ? 1e-5 : 2 * tolerance(t);
        EXPECT_LE(relative_error(yg, yc), tol) << what << " y";
        EXPECT_LE(relative_error(rvg, rvc), tol) << what << " running var";
        Tensor gy = random_cpu(yc.shape(), t, -1.0, 1.0, 35);
        yc.backward(gy);
        yg.backward(gy.to(gpu()));
        const double gtol = t == DType::F32 ? 1e-4 : 4 * tolerance(t);
        EXPECT_LE(relative_error(xg.grad(), xc.grad()), gtol) << what << " dx";
        EXPECT_LE(relative_error(wg.grad(), wc.grad()), gtol) << what << " dw";
        EXPECT_LE(relative_error(bg.grad(), bcpu.grad()), gtol) << what << " db";
        if (with_residual) EXPECT_LE(relative_error(rg.grad(), rc.grad()), gtol) << what << " dresidual";
      }
    }
  }
}

// relu(bn(x) + bn(r)) with the shortcut's batch norm fused (channels-last: one apply pass; backward: the mask
// from x and r, both norms' sums in one pass) against the CPU's composite; NCHW takes the GPU's composite.
TEST_F(GpuBatchNorm, DualAddReluMatchesCpu) {
  for (DType t : {DType::F32, DType::BF16}) {
    for (const BnCase& bc : kFusedCases) {
      if (!fused_case_runs_in(t, bc)) continue;
      const int64_t c = bc.channels_last ? bc.shape.back() : bc.shape[1];
      const std::string what =
          std::string(dtype_name(t)) + " " + shape_str(bc.shape) + (bc.channels_last ? " nhwc" : " nchw");
      std::vector<Tensor> in{random_cpu(bc.shape, t, -1.0, 1.0, 41), random_cpu({c}, t, 0.5, 1.5, 42),
                             random_cpu({c}, t, -0.5, 0.5, 43),      random_cpu(bc.shape, t, -2.0, 1.0, 44),
                             random_cpu({c}, t, 0.5, 1.5, 45),       random_cpu({c}, t, -0.5, 0.5, 46)};
      Tensor gy = random_cpu(bc.shape, t, -1.0, 1.0, 47);
      auto run = [&](Device dev) {
        std::vector<Tensor> v;
        for (const Tensor& q : in) v.push_back(q.detach().to(dev).set_requires_grad(true));
        Tensor rm = Tensor::zeros({c}, DType::F32, dev), rv = Tensor::ones({c}, DType::F32, dev);
        Tensor rrm = Tensor::zeros({c}, DType::F32, dev), rrv = Tensor::ones({c}, DType::F32, dev);
        Tensor y = batch_norm_dual_add_relu(v[0], {v[1], v[2], &rm, &rv}, v[3], {v[4], v[5], &rrm, &rrv}, true, 0.1,
                                            1e-5, bc.channels_last);
        y.backward(gy.to(dev));
        std::vector<Tensor> out{y, rm, rv, rrm, rrv};
        for (const Tensor& q : v) out.push_back(q.grad());
        return out;
      };
      const std::vector<Tensor> want = run(Device::cpu()), got = run(gpu());
      const char* names[] = {"y", "running mean", "running var", "shortcut running mean", "shortcut running var",
                             "dx", "dw", "db", "dr", "shortcut dw", "shortcut db"};
      for (size_t i = 0; i < want.size(); ++i) {
        const double tol = i < 5 ? (t == DType::F32 ? 1e-5 : 2 * tolerance(t)) : (t == DType::F32 ? 1e-4 : 4 * tolerance(t));
        EXPECT_LE(relative_error(got[i], want[i]), tol) << what << " " << names[i];
      }
    }
  }
}

TEST_F(GpuBatchNorm, DeterministicAcrossRuns) {
  Tensor x = random_cpu({8, 14, 14, 256}, DType::BF16, -1.0, 1.0, 21).to(gpu());
  Tensor w = random_cpu({256}, DType::BF16, 0.5, 1.5, 22).to(gpu()), b = Tensor::zeros({256}, DType::BF16, gpu());
  Tensor rm1 = Tensor::zeros({256}, DType::F32, gpu()), rv1 = Tensor::ones({256}, DType::F32, gpu());
  Tensor rm2 = Tensor::zeros({256}, DType::F32, gpu()), rv2 = Tensor::ones({256}, DType::F32, gpu());
  Tensor y1 = batch_norm(x, w, b, rm1, rv1, true, 0.1, 1e-5, true);
  Tensor y2 = batch_norm(x, w, b, rm2, rv2, true, 0.1, 1e-5, true);
  EXPECT_EQ(relative_error(y1, y2), 0.0);
  EXPECT_EQ(relative_error(rv1, rv2), 0.0);
}

}  // namespace
}  // namespace kolo::testing
