// Helpers shared by the model tests: an inline Adam (the optim library is separate), and a finite-difference
// check of a model's parameter gradients on a sample of elements.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/tensor/tensor.h"
#include "models/module.h"

namespace kolo::testing {

// Plain Adam on f32/f64 CPU parameters, written out so model tests do not depend on the optim library.
class TestAdam {
 public:
  TestAdam(std::vector<Tensor> params, double lr) : params_(std::move(params)), lr_(lr) {
    for (auto& p : params_) {
      m_.emplace_back(static_cast<size_t>(p.numel()), 0.0);
      v_.emplace_back(static_cast<size_t>(p.numel()), 0.0);
    }
  }
  void step() {
    ++t_;
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    NoGradGuard ng;
    for (size_t i = 0; i < params_.size(); ++i) {
      Tensor& p = params_[i];
      if (!p.grad().defined()) continue;
      const std::vector<double> g = p.grad().to_dense().to_vector<double>();
      std::vector<double> w = p.to_vector<double>();
      for (size_t j = 0; j < w.size(); ++j) {
        m_[i][j] = b1 * m_[i][j] + (1 - b1) * g[j];
        v_[i][j] = b2 * v_[i][j] + (1 - b2) * g[j] * g[j];
        const double mh = m_[i][j] / (1 - std::pow(b1, t_)), vh = v_[i][j] / (1 - std::pow(b2, t_));
        w[j] -= lr_ * mh / (std::sqrt(vh) + eps);
      }
      p.copy_(Tensor::from_vector(w, p.shape()));
      p.zero_grad();
    }
  }

 private:
  std::vector<Tensor> params_;
  double lr_;
  int t_ = 0;
  std::vector<std::vector<double>> m_, v_;
};

// Central differences of the scalar `loss()` w.r.t. up to `per_param` elements of every parameter of `m`
// (f64 model expected), compared with the analytic gradient of one backward pass.
inline void expect_model_gradcheck(models::Module& m, const std::function<Tensor()>& loss, int per_param = 6,
                                   double eps = 1e-6, double tol = 1e-5) {
  m.zero_grad();
  loss().backward();
  int checked = 0;
  for (auto& [name, p] : m.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name << " got no gradient";
    const std::vector<double> analytic = p.grad().to_dense().to_vector<double>();
    const int64_t n = p.numel();
    const int64_t stride = std::max<int64_t>(1, n / per_param);
    for (int64_t i = (n > 1 ? 1 : 0); i < n; i += stride) {
      NoGradGuard ng;
      std::vector<double> w = p.to_vector<double>();
      const double orig = w[i];
      auto eval = [&](double v) {
        w[i] = v;
        p.copy_(Tensor::from_vector(w, p.shape()));
        return loss().item();
      };
      const double numeric = (eval(orig + eps) - eval(orig - eps)) / (2 * eps);
      eval(orig);
      EXPECT_NEAR(analytic[i], numeric, tol + tol * std::abs(numeric)) << name << " element " << i;
      ++checked;
    }
  }
  EXPECT_GT(checked, 0);
}

}  // namespace kolo::testing
