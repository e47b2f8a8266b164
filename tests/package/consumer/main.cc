// Trains y = 2x with kolo's autograd from an installed package; exits non-zero if it does not learn.
#include <cstdio>

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/reduce.h"

int main() {
  using namespace kolo;
  Tensor w = Tensor::zeros({1, 1}).set_requires_grad(true);
  Tensor x = Tensor::from_vector<float>({1, 2, 3, 4}, {4, 1});
  Tensor y = scale(x, 2.0);
  for (int i = 0; i < 200; ++i) {
    Tensor loss = mean(square(sub(linear(x, w), y)));
    loss.backward();
    NoGradGuard ng;
    add_(w, w.grad(), -0.05);
    w.zero_grad();
  }
  const double got = w.item();
  std::printf("learned w = %.4f\n", got);
  return (got > 1.99 && got < 2.01) ? 0 : 1;
}
