// Fused batch_norm_relu / batch_norm_add_relu: finite-difference gradients in f64 on odd shapes (both layouts,
// training and eval, non-contiguous residual), equality with the unfused relu(add(batch_norm(x), r)) composite
// in f32 and bf16 (outputs, running statistics, every gradient), the composite fallback taken where a device
// has no fused kernel, and errors naming the op and shapes.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/ops/batch_norm_act.h"
#include "core/ops/conv.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "fused_kernels_off.h"
#include "gradcheck.h"

using namespace kolo;
using kolo::testing::expect_gradcheck;
using kolo::testing::rand_input;
using kolo::testing::WithoutFusedCpuKernels;

namespace {

void expect_close(const Tensor& got, const Tensor& want, double atol, double rtol, const std::string& what) {
  ASSERT_TRUE(got.defined() && want.defined()) << what;
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const auto g = got.to_dense().to_vector<double>(), w = want.to_dense().to_vector<double>();
  for (size_t i = 0; i < w.size(); ++i)
    ASSERT_NEAR(g[i], w[i], atol + rtol * std::abs(w[i])) << what << " element " << i;
}

template <typename Fn>
void expect_error(Fn&& fn, const std::vector<std::string>& needles) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

// Running statistics for C channels: fresh (training) or random (eval, so that they matter).
void make_stats(int64_t c, bool training, DType dt, uint64_t seed, Tensor& rm, Tensor& rv) {
  Generator g(seed);
  rm = training ? Tensor::zeros({c}, dt) : Tensor::randn({c}, g, dt);
  rv = training ? Tensor::ones({c}, dt) : Tensor::uniform({c}, 0.5, 2.0, g, dt);
}

// One configuration of the equality test: the fused op and the composite from identical inputs.
struct Outcome {
  Tensor y, rm, rv, dx, dw, db, dr;
};

Outcome run(bool fused, bool residual, bool cl, bool training, DType dt, const Shape& xs) {
  const int64_t c = cl ? xs.back() : xs[1];
  Generator g(21);
  Tensor x = Tensor::randn(xs, g).to(dt).set_requires_grad(true);
  Tensor w = Tensor::uniform({c}, -1.5, 1.5, g).to(dt).set_requires_grad(true);
  Tensor b = Tensor::randn({c}, g).to(dt).set_requires_grad(true);
  // A transposed buffer viewed back to xs: the residual arrives non-contiguous, as a strided skip path can.
  Shape ts = xs;
  std::swap(ts[1], ts[2]);
  Tensor rbase = Tensor::randn(ts, g).to(dt).set_requires_grad(true);
  Tensor r = rbase.transpose(1, 2);
  Tensor rw = Tensor::randn(xs, g).to(dt);
  Outcome o;
  make_stats(c, training, DType::F32, 5, o.rm, o.rv);
  Tensor y;
  if (fused) {
    y = residual ? batch_norm_add_relu(x, r, w, b, o.rm, o.rv, training, 0.1, 1e-5, cl)
                 : batch_norm_relu(x, w, b, o.rm, o.rv, training, 0.1, 1e-5, cl);
  } else {
    Tensor z = batch_norm(x, w, b, o.rm, o.rv, training, 0.1, 1e-5, cl);
    y = relu(residual ? add(z, r) : z);
  }
  sum(mul(y, rw)).backward();
  o.y = y.detach();
  o.dx = x.grad();
  o.dw = w.grad();
  o.db = b.grad();
  if (residual) o.dr = rbase.grad();
  return o;
}

}  // namespace

TEST(BatchNormActGrad, OddShapesF64) {
  for (bool cl : {false, true}) {
    for (bool training : {true, false}) {
      for (bool residual : {false, true}) {
        const Shape xs = cl ? Shape{3, 5, 3, 7} : Shape{3, 7, 5, 3};
        const int64_t c = 7;
        Tensor rm, rv;
        make_stats(c, training, DType::F64, 31, rm, rv);
        // The residual enters as a permuted view of its leaf (non-contiguous).
        auto f = [&, cl, training, residual](const std::vector<Tensor>& in) {
          return residual ? batch_norm_add_relu(in[0], in[3].permute({0, 3, 2, 1}), in[1], in[2], rm, rv, training,
                                                0.1, 1e-5, cl)
                          : batch_norm_relu(in[0], in[1], in[2], rm, rv, training, 0.1, 1e-5, cl);
        };
        std::vector<Tensor> inputs{rand_input(xs, 32), rand_input({c}, 33), rand_input({c}, 34)};
        Shape ps = xs;
        std::swap(ps[1], ps[3]);
        if (residual) inputs.push_back(rand_input(ps, 35));
        SCOPED_TRACE(std::string(cl ? "nhwc" : "nchw") + (training ? " train" : " eval") +
                     (residual ? " +residual" : ""));
        expect_gradcheck(f, inputs, 1e-6, 1e-6, 1e-5);
      }
    }
  }
}

TEST(BatchNormActGrad, NoAffineF64) {
  Tensor rm = Tensor::zeros({4}, DType::F64), rv = Tensor::ones({4}, DType::F64);
  expect_gradcheck(
      [&](const std::vector<Tensor>& in) { return batch_norm_add_relu(in[0], in[1], Tensor(), Tensor(), rm, rv, true); },
      {rand_input({5, 4}, 36), rand_input({5, 4}, 37)});
}

TEST(BatchNormActCross, MatchesUnfusedCompositeF32AndBf16) {
  for (DType dt : {DType::F32, DType::BF16}) {
    // f32: the same arithmetic in the same order, so agreement is to rounding of the gradient sums' last
    // step; bf16: the fused kernel rounds every intermediate to bf16 as the composite does.
    const double tol = dt == DType::F32 ? 1e-6 : 1e-2;
    for (bool cl : {false, true}) {
      for (bool training : {true, false}) {
        for (bool residual : {false, true}) {
          const Shape xs = cl ? Shape{4, 9, 5, 24} : Shape{4, 24, 9, 5};
          const std::string what = std::string(dtype_name(dt)) + (cl ? " nhwc" : " nchw") +
                                   (training ? " train" : " eval") + (residual ? " +residual" : "");
          const Outcome f = run(true, residual, cl, training, dt, xs), u = run(false, residual, cl, training, dt, xs);
          expect_close(f.y, u.y, 0, tol, what + " y");
          expect_close(f.rm, u.rm, 0, 1e-7, what + " running_mean");
          expect_close(f.rv, u.rv, 0, 1e-7, what + " running_var");
          expect_close(f.dx, u.dx, tol, tol, what + " dx");
          expect_close(f.dw, u.dw, tol, tol, what + " dweight");
          expect_close(f.db, u.db, tol, tol, what + " dbias");
          if (residual) expect_close(f.dr, u.dr, 0, tol, what + " dresidual");
        }
      }
    }
  }
}

TEST(BatchNormActCross, F32VectorLoopsMatchF64) {
  // f32 runs the per-ISA loops of core/ops/cpu/batch_norm_rows.h (rows for channels last, planes for NCHW),
  // f64 the generic ones; the composite test above compares f32 with f32 (both through those loops), this one
  // checks them against an independent computation. Odd C and plane sizes exercise the remainder lanes.
  for (bool cl : {false, true}) {
    for (bool training : {true, false}) {
      for (bool residual : {false, true}) {
        const Shape xs = cl ? Shape{3, 7, 5, 37} : Shape{3, 37, 7, 5};
        const std::string what = std::string(cl ? "nhwc" : "nchw") + (training ? " train" : " eval") +
                                 (residual ? " +residual" : "");
        const Outcome f = run(true, residual, cl, training, DType::F32, xs);
        const Outcome d = run(true, residual, cl, training, DType::F64, xs);
        expect_close(f.y, d.y, 1e-5, 1e-5, what + " y");
        expect_close(f.rm, d.rm, 1e-6, 1e-6, what + " running_mean");
        expect_close(f.rv, d.rv, 1e-6, 1e-6, what + " running_var");
        expect_close(f.dx, d.dx, 1e-4, 1e-4, what + " dx");
        expect_close(f.dw, d.dw, 1e-4, 1e-4, what + " dweight");
        expect_close(f.db, d.db, 1e-4, 1e-4, what + " dbias");
        if (residual) expect_close(f.dr, d.dr, 1e-6, 1e-6, what + " dresidual");
      }
    }
  }
}

TEST(BatchNormActCross, FallbackWithoutFusedKernelIsTheComposite) {
  const Shape xs{2, 6, 4, 3};
  const Outcome fused = run(true, true, false, true, DType::F32, xs);
  Outcome fallback;
  {
    WithoutFusedCpuKernels off;
    EXPECT_FALSE(batch_norm_act_fwd_kernel().has(DeviceType::CPU));
    fallback = run(true, true, false, true, DType::F32, xs);
  }
  EXPECT_TRUE(batch_norm_act_fwd_kernel().has(DeviceType::CPU));
  expect_close(fallback.y, fused.y, 0, 1e-6, "y");
  expect_close(fallback.dx, fused.dx, 1e-6, 1e-6, "dx");
  expect_close(fallback.dr, fused.dr, 0, 1e-6, "dresidual");
  expect_close(fallback.dw, fused.dw, 1e-6, 1e-6, "dweight");
}

TEST(BatchNormActErrors, BadInputNamesOpAndShapes) {
  Tensor rm = Tensor::zeros({4}), rv = Tensor::ones({4});
  expect_error([&] { batch_norm_add_relu(Tensor::zeros({2, 4, 3, 3}), Tensor::zeros({2, 4, 3, 2}), Tensor(),
                                         Tensor(), rm, rv, true); },
               {"batch_norm_add_relu", "residual", "[2, 4, 3, 2]", "[2, 4, 3, 3]"});
  expect_error([&] { batch_norm_add_relu(Tensor::zeros({2, 4, 3, 3}), Tensor::zeros({2, 4, 3, 3}, DType::F64),
                                         Tensor(), Tensor(), rm, rv, true); },
               {"batch_norm_add_relu", "residual"});
  expect_error([&] { batch_norm_relu(Tensor::zeros({2, 5, 3, 3}), Tensor(), Tensor(), rm, rv, true); },
               {"batch_norm_relu", "[2, 5, 3, 3]", "[4]"});
  expect_error([&] { batch_norm_relu(Tensor::zeros({1, 4, 1, 1}), Tensor(), Tensor(), rm, rv, true); },
               {"batch_norm_relu", "more than one value"});
  expect_error([&] { batch_norm_add_relu(Tensor::zeros({2, 4}), Tensor(), Tensor(), Tensor(), rm, rv, true); },
               {"batch_norm_add_relu", "undefined"});
}

// The dual form (shortcut batch norm fused) equals batch_norm then batch_norm_add_relu, running statistics of
// both included; a mismatched shortcut is refused with both shapes named.
TEST(BatchNormActCross, DualAddReluIsTheComposite) {
  Generator g(61);
  const Tensor x = Tensor::randn({3, 4, 5, 6}, g), r = Tensor::randn({3, 4, 5, 6}, g);
  const Tensor w = Tensor::uniform({6}, 0.5, 1.5, g), b = Tensor::randn({6}, g);
  const Tensor rw = Tensor::uniform({6}, 0.5, 1.5, g), rb = Tensor::randn({6}, g);
  Tensor m1 = Tensor::zeros({6}), v1 = Tensor::ones({6}), m2 = Tensor::zeros({6}), v2 = Tensor::ones({6});
  const Tensor y = batch_norm_dual_add_relu(x, {w, b, &m1, &v1}, r, {rw, rb, &m2, &v2}, true, 0.1, 1e-5, true);
  Tensor n1 = Tensor::zeros({6}), u1 = Tensor::ones({6}), n2 = Tensor::zeros({6}), u2 = Tensor::ones({6});
  const Tensor want = batch_norm_add_relu(x, batch_norm(r, rw, rb, n2, u2, true, 0.1, 1e-5, true), w, b, n1, u1, true,
                                          0.1, 1e-5, true);
  EXPECT_EQ(y.to_vector<float>(), want.to_vector<float>());
  EXPECT_EQ(m2.to_vector<float>(), n2.to_vector<float>());
  EXPECT_EQ(v1.to_vector<float>(), u1.to_vector<float>());
  Tensor m3 = Tensor::zeros({6}), v3 = Tensor::ones({6});
  expect_error([&] { batch_norm_dual_add_relu(x, {w, b, &m1, &v1}, Tensor::zeros({3, 4, 4, 6}), {rw, rb, &m3, &v3},
                                              true, 0.1, 1e-5, true); },
               {"batch_norm_dual_add_relu", "shortcut", "[3, 4, 4, 6]", "[3, 4, 5, 6]"});
}

// NaN passes through the fused ReLU on every layout and dtype, as through relu(batch_norm(x)): a diverging
// activation stays visible to the non-finite checks.
TEST(BatchNormAct, NanPassesThroughLikeRelu) {
  for (DType t : {DType::F32, DType::F64}) {
    for (bool channels_last : {false, true}) {
      Tensor x = Tensor::ones({2, 3, 2, 2}, t);
      x.select(0, 1).fill_(std::numeric_limits<double>::quiet_NaN());
      if (channels_last) x = x.permute({0, 2, 3, 1}).contiguous();
      Tensor rm = Tensor::zeros({3}), rv = Tensor::ones({3});
      const auto y = batch_norm_relu(x, Tensor(), Tensor(), rm, rv, /*training=*/false, 0.1, 1e-5, channels_last)
                         .to_vector<double>();
      int nans = 0;
      for (double v : y) nans += std::isnan(v);
      EXPECT_EQ(nans, 12) << dtype_name(t) << (channels_last ? " channels-last" : "");
    }
  }
}
