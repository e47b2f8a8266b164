// Elementwise ops and reductions: values, broadcasting, and finite-difference gradients (f64).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/ops/shape_ops.h"
#include "gradcheck.h"

using namespace kolo;
using kolo::testing::expect_gradcheck;
using kolo::testing::rand_input;

TEST(Elementwise, BroadcastingValues) {
  Tensor a = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = Tensor::from_vector<float>({10, 20, 30}, {3});
  EXPECT_EQ(add(a, b).to_vector<float>(), (std::vector<float>{11, 22, 33, 14, 25, 36}));
  Tensor c = Tensor::from_vector<float>({2, 3}, {2, 1});
  EXPECT_EQ(mul(a, c).to_vector<float>(), (std::vector<float>{2, 4, 6, 12, 15, 18}));
  EXPECT_EQ(sum(a, {0}).to_vector<float>(), (std::vector<float>{5, 7, 9}));
  EXPECT_EQ(sum(a, {1}, true).shape(), (Shape{2, 1}));
  EXPECT_EQ(amax(a, 1).to_vector<float>(), (std::vector<float>{3, 6}));
  EXPECT_EQ(argmax(a, 0).to_vector<int64_t>(), (std::vector<int64_t>{1, 1, 1}));
  EXPECT_FLOAT_EQ(mean(a).item(), 3.5f);
}

TEST(Elementwise, UnaryGradients) {
  using Op = Tensor (*)(const Tensor&);
  const std::vector<std::pair<const char*, Op>> ops = {
      {"exp", exp}, {"tanh", tanh}, {"sigmoid", sigmoid}, {"gelu", gelu}, {"square", square}, {"neg", neg}};
  for (auto [name, op] : ops) {
    SCOPED_TRACE(name);
    expect_gradcheck([op](const std::vector<Tensor>& in) { return op(in[0]); }, {rand_input({3, 5}, 1)});
  }
  // Ops with restricted domains get positive inputs; relu/abs away from the kink.
  Tensor pos = add_scalar(abs(rand_input({7}, 2)), 0.5).detach().set_requires_grad(true);
  expect_gradcheck([](const std::vector<Tensor>& in) { return log(in[0]); }, {pos});
  expect_gradcheck([](const std::vector<Tensor>& in) { return sqrt(in[0]); }, {pos});
  expect_gradcheck([](const std::vector<Tensor>& in) { return rsqrt(in[0]); }, {pos});
  expect_gradcheck([](const std::vector<Tensor>& in) { return reciprocal(in[0]); }, {pos});
  expect_gradcheck([](const std::vector<Tensor>& in) { return relu(in[0]); }, {pos});
}

TEST(Elementwise, BinaryGradientsWithBroadcastingAndStrides) {
  Tensor a = rand_input({4, 1, 3}, 3), b = rand_input({5, 3}, 4);
  expect_gradcheck([](const std::vector<Tensor>& in) { return add(in[0], in[1]); }, {a, b});
  expect_gradcheck([](const std::vector<Tensor>& in) { return sub(in[0], in[1]); }, {a, b});
  expect_gradcheck([](const std::vector<Tensor>& in) { return mul(in[0], in[1]); }, {a, b});
  Tensor d = add_scalar(abs(rand_input({5, 3}, 5)), 1.0).detach().set_requires_grad(true);
  expect_gradcheck([](const std::vector<Tensor>& in) { return div(in[0], in[1]); }, {a, d});
  // Non-contiguous operands: a transposed view and a strided slice.
  Tensor m = rand_input({3, 6}, 6);
  expect_gradcheck([](const std::vector<Tensor>& in) {
    return mul(in[0].transpose(0, 1).slice(0, 1, 6, 2), in[0].transpose(0, 1).slice(0, 0, 5, 2));
  }, {m});
  expect_gradcheck([](const std::vector<Tensor>& in) { return maximum(in[0], in[1]); },
                   {rand_input({4, 3}, 8), rand_input({4, 3}, 9)});
}

TEST(Elementwise, ReductionGradients) {
  Tensor x = rand_input({3, 4, 5}, 10);
  expect_gradcheck([](const std::vector<Tensor>& in) { return sum(in[0], {1}); }, {x});
  expect_gradcheck([](const std::vector<Tensor>& in) { return sum(in[0], {0, 2}, true); }, {x});
  expect_gradcheck([](const std::vector<Tensor>& in) { return mean(in[0], {2}); }, {x});
  expect_gradcheck([](const std::vector<Tensor>& in) { return amax(in[0], 1); }, {x});
  expect_gradcheck([](const std::vector<Tensor>& in) { return sum(in[0].permute({2, 0, 1}), {0}); }, {x});
}

TEST(Elementwise, CatStackSliceGradients) {
  Tensor a = rand_input({2, 3}, 11), b = rand_input({2, 2}, 12);
  expect_gradcheck([](const std::vector<Tensor>& in) { return cat({in[0], in[1]}, 1); }, {a, b});
  expect_gradcheck([](const std::vector<Tensor>& in) { return stack({in[0], in[0]}, 0); }, {a});
  expect_gradcheck([](const std::vector<Tensor>& in) { return in[0].slice(1, 0, 3, 2).select(0, 1); }, {a});
}

TEST(Elementwise, TopK) {
  Tensor x = Tensor::from_vector<float>({0.1f, 0.9f, 0.5f, 0.7f, 3, 1, 2, 0}, {2, 4});
  auto [v, i] = topk(x, 2);
  EXPECT_EQ(v.to_vector<float>(), (std::vector<float>{0.9f, 0.7f, 3, 2}));
  EXPECT_EQ(i.to_vector<int64_t>(), (std::vector<int64_t>{1, 3, 0, 2}));
  EXPECT_THROW(topk(x, 5), Error);
}

TEST(Elementwise, HalfPrecisionComputesInFloat) {
  Tensor a = Tensor::full({1000}, 1.0, DType::BF16);
  EXPECT_FLOAT_EQ(sum(a).item(), 1000.f);  // accumulated in double, rounded once
  Tensor b = Tensor::full({4}, 0.1, DType::F16);
  EXPECT_NEAR(mul(b, b).to_vector<float>()[0], 0.01f, 1e-4);
  EXPECT_TRUE(all_finite(a));
  EXPECT_FALSE(all_finite(div(Tensor::ones({2}), Tensor::zeros({2}))));
}

// NaN and infinities as PyTorch treats them (a NaN stays visible to the non-finite checks), integer division's
// traps, and the shapes that used to crash: dimension 0 of a 0-d tensor, rows of the wrong width.
TEST(Elementwise, NonFiniteAndIntegerEdgeCases) {
  const double nan = std::nan(""), inf = INFINITY;
  auto v = [](const Tensor& t) { return t.to_vector<double>(); };
  Tensor a = Tensor::from_vector<double>({nan, 1}, {2}), b = Tensor::from_vector<double>({1, nan}, {2});
  for (const auto& r : {v(maximum(a, b)), v(minimum(a, b)), v(maximum(b, a))}) {
    EXPECT_TRUE(std::isnan(r[0]));
    EXPECT_TRUE(std::isnan(r[1]));
  }
  EXPECT_TRUE(std::isnan(v(relu(Tensor::from_vector<double>({nan}, {1})))[0]));
  EXPECT_EQ(argmax(Tensor::from_vector<double>({1, nan, 0}, {1, 3}), 1).to_vector<int64_t>()[0], 1);
  EXPECT_EQ(v(amax(Tensor::from_vector<double>({-inf, -inf}, {1, 2}), 1))[0], -inf);

  Tensor num = Tensor::from_vector<int64_t>({1, 2}, {2});
  EXPECT_THROW(div(num, Tensor::from_vector<int64_t>({0, 1}, {2})), Error);
  const int64_t lowest = std::numeric_limits<int64_t>::min();
  EXPECT_EQ(div(Tensor::from_vector<int64_t>({lowest}, {1}), Tensor::from_vector<int64_t>({-1}, {1}))
                .to_vector<int64_t>()[0],
            lowest);  // wraps, as two's complement, instead of trapping

  const Tensor scalar = Tensor::scalar(3.0);
  EXPECT_THROW(scalar.size(0), Error);
  EXPECT_THROW(sum(scalar, {0}), Error);
  EXPECT_THROW(cat({scalar, scalar}, 0), Error);
  EXPECT_THROW(Tensor::ones({3}).expand({-1, 3}), Error);
  EXPECT_EQ(amax(Tensor::zeros({0, 5}), 1).shape(), (Shape{0}));  // no rows: no maxima to take
  EXPECT_THROW(amax(Tensor::zeros({5, 0}), 1), Error);              // rows of no elements

  Tensor y = Tensor::zeros({4, 4});
  EXPECT_THROW(index_add_rows_(y, Tensor::from_vector<int64_t>({0, 1}, {2}), Tensor::ones({2, 5})), Error);
  EXPECT_THROW(index_add_rows_(y, Tensor::from_vector<int64_t>({0, 1}, {2}), Tensor::ones({2, 3})), Error);
}

// A bf16 row added to many times is summed in double and rounded once: rounding after every add stalled
// 1000 x 0.001 at 0.5 (0.5 + 0.001 rounds back to 0.5 in bf16).
TEST(Elementwise, IndexAddRowsRoundsOnceInHalfPrecision) {
  Tensor y = Tensor::zeros({2, 3}, DType::BF16);
  Tensor idx = Tensor::zeros({1000}, DType::I64);
  index_add_rows_(y, idx, Tensor::full({1000, 3}, 0.001, DType::BF16));
  const auto got = y.to_vector<float>();
  for (int c = 0; c < 3; ++c) EXPECT_EQ(got[c], 1.0f) << c;  // bf16(1000 x bf16(0.001) = 0.99945)
  for (int c = 3; c < 6; ++c) EXPECT_EQ(got[c], 0.0f) << c;
}
