// Finite-difference gradient checking shared by op tests.
//
// Checks the analytic gradient of L = sum(f(inputs) * R), with R a fixed random tensor (so that every output
// element matters with a different weight), against central differences. Run in f64 where the op supports
// it, so that eps = 1e-6 gives ~1e-9 truncation and rounding error and a tight tolerance is justified.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/tensor/tensor.h"

namespace kolo::testing {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

inline double weighted_sum(const Tensor& y, const Tensor& r) {
  return sum(mul(y.to(DType::F64), r.to(DType::F64))).item();
}

// inputs: leaf tensors (f64 or f32); those with requires_grad are checked.
inline void expect_gradcheck(const Fn& f, std::vector<Tensor> inputs, double eps = 1e-6, double atol = 1e-6,
                             double rtol = 1e-5, uint64_t seed = 7) {
  Tensor y = f(inputs);
  Generator gen(seed);
  Tensor r = Tensor::randn(y.shape(), gen, y.dtype(), y.device());
  for (auto& x : inputs)
    if (x.requires_grad()) x.zero_grad();
  Tensor loss = sum(mul(y, r));
  loss.backward();
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& x = inputs[k];
    if (!x.requires_grad()) continue;
    ASSERT_TRUE(x.grad().defined()) << "input " << k << " got no gradient";
    const std::vector<double> analytic = x.grad().to_dense().to_vector<double>();
    NoGradGuard ng;
    Tensor xc = x.contiguous();
    // Perturb through a contiguous CPU copy and write it back so non-contiguous inputs are covered too.
    std::vector<double> numeric(analytic.size());
    for (int64_t i = 0; i < x.numel(); ++i) {
      std::vector<double> vals = x.to_vector<double>();
      const double orig = vals[i];
      auto eval = [&](double v) {
        vals[i] = v;
        Tensor p = Tensor::from_vector(vals, x.shape()).to(x.dtype());
        x.copy_(p);
        return weighted_sum(f(inputs), r);
      };
      const double up = eval(orig + eps), down = eval(orig - eps);
      eval(orig);
      numeric[i] = (up - down) / (2 * eps);
    }
    for (size_t i = 0; i < numeric.size(); ++i)
      EXPECT_NEAR(analytic[i], numeric[i], atol + rtol * std::abs(numeric[i]))
          << "input " << k << " element " << i << " of " << x.describe();
  }
}

inline Tensor rand_input(const Shape& s, uint64_t seed, DType dt = DType::F64) {
  Generator g(seed);
  return Tensor::randn(s, g, dt).set_requires_grad(true);
}

}  // namespace kolo::testing
