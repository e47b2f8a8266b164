// The per-ISA f32 ReLU loops (core/ops/cpu/relu_f32.h) against the generic f64 path: forward and gradient on
// odd lengths (vector remainders), a length large enough to run on several threads, and the NaN rule
// (relu(NaN) = NaN, as PyTorch and the generic loop: a diverging activation stays visible).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"

using namespace kolo;

TEST(ReluF32, MatchesF64ForwardAndBackward) {
  for (int64_t n : {1, 7, 33, 100003}) {
    Generator g(static_cast<uint64_t>(n));
    Tensor base = Tensor::randn({n}, g);
    Tensor w = Tensor::randn({n}, g);
    Tensor x32 = base.detach().set_requires_grad(true);
    Tensor x64 = base.to(DType::F64).set_requires_grad(true);
    Tensor y32 = relu(x32), y64 = relu(x64);
    sum(mul(y32, w)).backward();
    sum(mul(y64, w.to(DType::F64))).backward();
    const auto a = y32.to_vector<double>(), b = y64.to_vector<double>();
    const auto ga = x32.grad().to_vector<double>(), gb = x64.grad().to_vector<double>();
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(a[i], b[i]) << "n " << n << " i " << i;
      ASSERT_NEAR(ga[i], gb[i], 1e-6 * (1 + std::abs(gb[i]))) << "n " << n << " i " << i;
    }
  }
}

TEST(ReluF32, NanPassesThrough) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor x = Tensor::from_vector<float>({nan, -1.0f, 2.0f, 0.0f, nan, 3.0f, -0.5f, nan, 1.0f}, {9});
  const auto y = relu(x).to_vector<float>();
  const std::vector<float> want{nan, 0, 2, 0, nan, 3, 0, nan, 1};
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(want[i]))
      EXPECT_TRUE(std::isnan(y[i])) << i;
    else
      EXPECT_EQ(y[i], want[i]) << i;
  }
}
