// matmul/linear values against a naive loop, batch broadcasting, transposed operands, gradients.
#include <gtest/gtest.h>

#include "core/ops/linalg.h"
#include "gradcheck.h"

using namespace kolo;
using kolo::testing::expect_gradcheck;
using kolo::testing::rand_input;

static std::vector<double> naive(const Tensor& a, const Tensor& b) {
  const auto av = a.contiguous().to_vector<double>(), bv = b.contiguous().to_vector<double>();
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  std::vector<double> c(static_cast<size_t>(m * n), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t p = 0; p < k; ++p) c[i * n + j] += av[i * k + p] * bv[p * n + j];
  return c;
}

TEST(Linalg, MatmulMatchesNaiveForAllLayouts) {
  Generator g(1);
  Tensor a = Tensor::randn({5, 7}, g, DType::F64), b = Tensor::randn({7, 3}, g, DType::F64);
  Tensor at = Tensor::randn({7, 5}, g, DType::F64).transpose(0, 1);
  Tensor bt = Tensor::randn({3, 7}, g, DType::F64).transpose(0, 1);
  for (auto [x, y] : std::vector<std::pair<Tensor, Tensor>>{{a, b}, {at, b}, {a, bt}, {at, bt}}) {
    const auto got = matmul(x, y).to_vector<double>();
    const auto want = naive(x, y);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-12);
  }
}

TEST(Linalg, BatchedBroadcastAndGradients) {
  expect_gradcheck([](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); },
                   {rand_input({2, 3, 4, 5}, 1), rand_input({3, 5, 2}, 2)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return matmul(in[0].transpose(-1, -2), in[1]); },
                   {rand_input({2, 5, 4}, 3), rand_input({2, 5, 3}, 4)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); },
                   {rand_input({2, 3, 4}, 5), rand_input({6, 4}, 6), rand_input({6}, 7)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return linear_relu(in[0], in[1], in[2]); },
                   {rand_input({2, 3, 4}, 8), rand_input({6, 4}, 9), rand_input({6}, 10)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return feed_forward(in[0], in[1], in[2], in[3], in[4]); },
                   {rand_input({2, 3, 4}, 11), rand_input({6, 4}, 12), rand_input({6}, 13), rand_input({5, 6}, 14),
                    rand_input({5}, 15)});
}

TEST(Linalg, Float32AndBf16) {
  Generator g(2);
  Tensor a = Tensor::randn({64, 32}, g), b = Tensor::randn({32, 16}, g);
  const auto f = matmul(a, b).to_vector<double>();
  const auto d = matmul(a.to(DType::F64), b.to(DType::F64)).to_vector<double>();
  for (size_t i = 0; i < f.size(); ++i) EXPECT_NEAR(f[i], d[i], 1e-4);
  const auto h = matmul(a.to(DType::BF16), b.to(DType::BF16)).to_vector<double>();
  for (size_t i = 0; i < h.size(); ++i) EXPECT_NEAR(h[i], d[i], 0.1 + 0.02 * std::abs(d[i]));
}

TEST(Linalg, ShapeErrors) {
  EXPECT_THROW(matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 2})), Error);
  EXPECT_THROW(matmul(Tensor::zeros({3}), Tensor::zeros({3, 2})), Error);
  EXPECT_THROW(linear(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})), Error);
  EXPECT_THROW(linear_relu(Tensor::zeros({2, 3}), Tensor::zeros({4, 3}), Tensor::zeros({5})), Error);
  const Tensor x = Tensor::zeros({2, 3}), w1 = Tensor::zeros({4, 3}), b1 = Tensor::zeros({4});
  EXPECT_THROW(feed_forward(x, w1, b1, Tensor::zeros({5, 3}), Tensor::zeros({5})), Error);  // w2 takes 3, not 4
  EXPECT_THROW(feed_forward(x, w1, b1, Tensor::zeros({5, 4}), Tensor::zeros({4})), Error);  // b2 length
  EXPECT_THROW(feed_forward(x, Tensor::zeros({4, 2}), b1, Tensor::zeros({5, 4}), Tensor::zeros({5})), Error);
}
