// Optimizers against hand-computed steps, parameter groups, clipping, flat packing and the state dict.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>

#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/reduce.h"
#include "optim/adam.h"
#include "optim/lamb.h"
#include "optim/lars.h"
#include "optim/sgd.h"

using namespace kolo;

namespace {

Tensor param(std::vector<float> v, Shape s = {}) {
  if (s.empty()) s = {static_cast<int64_t>(v.size())};
  return Tensor::from_vector<float>(v, s).set_requires_grad(true);
}

void set_grad(Tensor& p, std::vector<float> g) { p.set_grad(Tensor::from_vector<float>(g, p.shape())); }

void expect_near(const Tensor& t, const std::vector<double>& want, double tol) {
  auto got = t.to_vector<double>();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "element " << i;
}

}  // namespace

TEST(Sgd, PlainStep) {
  Tensor p = param({1, 2});
  Sgd opt({{"p", p}}, SgdOptions{.lr = 0.1});
  set_grad(p, {0.5f, -1.0f});
  opt.step();
  expect_near(p, {0.95, 2.1}, 1e-7);
}

TEST(Sgd, NesterovMomentumWeightDecayTwoSteps) {
  // By hand (lr 0.1, mu 0.9, wd 0.1, g = 1): step 1 d = 1.1, buf = 1.1, d = 1.1 + 0.99 = 2.09,
  // p = 1 - 0.209 = 0.791; step 2 d = 1.0791, buf = 0.99 + 1.0791 = 2.0691, d = 1.0791 + 1.86219,
  // p = 0.791 - 0.294129 = 0.496871.
  Tensor p = param({1});
  Sgd opt({{"p", p}}, SgdOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.1, .nesterov = true});
  set_grad(p, {1});
  opt.step();
  expect_near(p, {0.791}, 1e-6);
  set_grad(p, {1});
  opt.step();
  expect_near(p, {0.496871}, 1e-6);
  EXPECT_THROW(Sgd({{"q", param({1})}}, SgdOptions{.momentum = 0, .nesterov = true}), Error);
}

TEST(Adam, TwoStepsByHand) {
  // Step 1 moves by lr * sign(g); step 2 (g = 1): m = 0.28, v = 0.004996, m_hat = 0.28 / 0.19,
  // v_hat = 0.004996 / 0.001999, p = 0.9 - 0.1 * 1.4736842 / 1.5809018 = 0.8067818.
  Tensor p = param({1, -1});
  Adam opt({{"p", p}}, AdamOptions{.lr = 0.1});
  set_grad(p, {2.0f, -0.5f});
  opt.step();
  expect_near(p, {0.9, -0.9}, 1e-6);
  set_grad(p, {1.0f, 1.0f});
  opt.step();
  expect_near(p.slice(0, 0, 1), {0.8067818}, 2e-6);
}

TEST(Adam, L2VersusDecoupledDecay) {
  // With g = 0: Adam's L2 makes g = wd * p = 0.1 and steps by lr; AdamW only shrinks p by (1 - lr * wd).
  Tensor a = param({1}), b = param({1});
  Adam adam({{"a", a}}, AdamOptions{.lr = 0.1, .weight_decay = 0.1});
  AdamW adamw({{"b", b}}, AdamOptions{.lr = 0.1, .weight_decay = 0.1});
  set_grad(a, {0});
  set_grad(b, {0});
  adam.step();
  adamw.step();
  expect_near(a, {0.9}, 1e-6);
  expect_near(b, {0.99}, 1e-7);
  EXPECT_EQ(adamw.kind(), "AdamW");
  const AdamOptions t = AdamOptions::transformer();
  EXPECT_DOUBLE_EQ(t.beta1, 0.9);
  EXPECT_DOUBLE_EQ(t.beta2, 0.98);
  EXPECT_DOUBLE_EQ(t.eps, 1e-9);
}

TEST(Lars, TrustRatioAndExclusion) {
  // ||w|| = 5, ||g|| = 1: trust = 0.001 * 5 / (1 + 0 + 1e-8); the bias group takes a plain SGD step.
  Tensor w = param({3, 4}, {1, 2}), bias = param({1});
  Lars opt(decay_groups({{"w", w}, {"bias", bias}}), LarsOptions{.lr = 1.0, .momentum = 0.0, .weight_decay = 0.0});
  ASSERT_EQ(opt.num_groups(), 2u);
  EXPECT_TRUE(opt.group(1).exclude_from_adaptation);
  set_grad(w, {0.6f, 0.8f});
  set_grad(bias, {1.0f});
  opt.step();
  expect_near(w, {3 - 0.003, 4 - 0.004}, 1e-6);
  expect_near(bias, {0.0}, 1e-7);
  EXPECT_NEAR(opt.last_trust_ratio(0, 0), 0.005, 1e-9);
  EXPECT_DOUBLE_EQ(opt.last_trust_ratio(1, 0), 1.0);
}

TEST(Lars, WeightDecayEntersTrustRatio) {
  // wd = 0.5: trust = 0.001 * 5 / (1 + 2.5) and d = (g + 0.5 w) * trust.
  Tensor w = param({3, 4});
  Lars opt({ParamGroup{{{"w", w}}}}, LarsOptions{.lr = 1.0, .momentum = 0.0, .weight_decay = 0.5});
  set_grad(w, {0.6f, 0.8f});
  opt.step();
  const double tr = 0.005 / 3.5;
  expect_near(w, {3 - (0.6 + 1.5) * tr, 4 - (0.8 + 2.0) * tr}, 1e-6);
}

TEST(Lamb, FirstStepTrustRatio) {
  // Step 1: m_hat = g, v_hat = g^2, so u = g / (|g| + eps) ~ (1, -1); ||w|| = 5, ||u|| = sqrt 2.
  Tensor w = param({3, 4});
  Lamb opt({ParamGroup{{{"w", w}}}}, LambOptions{.lr = 0.01, .weight_decay = 0.0});
  set_grad(w, {1.0f, -2.0f});
  opt.step();
  const double s = 0.01 * 5.0 / std::sqrt(2.0);
  expect_near(w, {3 - s, 4 + s}, 1e-5);
  // Excluded group: trust 1, decoupled decay still applies through u.
  Tensor b = param({2});
  ParamGroup g{{{"b", b}}};
  g.exclude_from_adaptation = true;
  g.weight_decay = 0.5;
  Lamb ex({g}, LambOptions{.lr = 0.1});
  set_grad(b, {1.0f});
  ex.step();
  expect_near(b, {2 - 0.1 * (1.0 + 1.0)}, 1e-5);
}

TEST(Optimizer, GroupLrMultAndWeightDecay) {
  Tensor a = param({1}), b = param({1});
  ParamGroup ga{{{"a", a}}}, gb{{{"b", b}}};
  gb.lr_mult = 2.0;
  gb.weight_decay = 0.0;
  Sgd opt({ga, gb}, SgdOptions{.lr = 0.1, .weight_decay = 1.0});
  set_grad(a, {1});
  set_grad(b, {1});
  opt.step();
  expect_near(a, {1 - 0.1 * 2.0}, 1e-7);  // g + wd * p = 2
  expect_near(b, {1 - 0.2}, 1e-7);        // lr 0.2, no decay
  opt.set_lr(0.0);
  set_grad(a, {1});
  opt.step();
  expect_near(a, {0.8}, 1e-7);
}

TEST(Optimizer, RefusesNegativeOrNonFiniteGroupSettings) {
  auto group = [](double lr_mult, std::optional<double> wd) {
    ParamGroup g{{{"w", param({2})}}};
    g.lr_mult = lr_mult;
    g.weight_decay = wd;
    return g;
  };
  EXPECT_THROW(Sgd({group(-1.0, std::nullopt)}, SgdOptions{}), Error);
  EXPECT_THROW(Sgd({group(std::nan(""), std::nullopt)}, SgdOptions{}), Error);
  EXPECT_THROW(Sgd({group(1.0, -5.0)}, SgdOptions{}), Error);
  EXPECT_THROW(Adam({group(1.0, INFINITY)}, AdamOptions{}), Error);
  EXPECT_NO_THROW(Sgd({group(0.0, 0.0)}, SgdOptions{}));  // a frozen group
}

TEST(Optimizer, GlobalNormClipping) {
  Tensor a = param({0, 0}), b = param({0});
  Sgd opt({{"a", a}, {"b", b}}, SgdOptions{.lr = 1.0});
  opt.set_clip_grad_norm(1.0);
  set_grad(a, {3, 0});
  set_grad(b, {4});
  opt.step();
  EXPECT_NEAR(opt.last_grad_norm(), 5.0, 1e-6);
  expect_near(a, {-0.6, 0}, 1e-6);
  expect_near(b, {-0.8}, 1e-6);
  // Below the limit nothing is scaled.
  set_grad(a, {0.3f, 0});
  set_grad(b, {0.4f});
  opt.step();
  expect_near(a, {-0.9, 0}, 1e-6);
}

// Without clipping the norm is reduced during step() and read back on demand: it is the norm of that
// step's gradients however late it is read, and steps without a read in between each report their own.
TEST(Optimizer, GradNormWithoutClippingIsTheStepsNorm) {
  Tensor a = param({0, 0}), b = param({0});
  Sgd opt({{"a", a}, {"b", b}}, SgdOptions{.lr = 1.0});
  set_grad(a, {3, 0});
  set_grad(b, {4});
  opt.step();
  expect_near(a, {-3, 0}, 1e-6);
  EXPECT_NEAR(opt.last_grad_norm(), 5.0, 1e-6);
  EXPECT_NEAR(opt.last_grad_norm(), 5.0, 1e-6);
  set_grad(a, {0, 6});
  set_grad(b, {8});
  opt.step();
  set_grad(a, {0.6f, 0});
  set_grad(b, {0.8f});
  opt.step();
  EXPECT_NEAR(opt.last_grad_norm(), 1.0, 1e-6);
}

TEST(FlatBuffer, PacksParametersAndBindsGradients) {
  Tensor w = param({1, 2, 3, 4, 5, 6}, {2, 3}), b = param({7, 8});
  Sgd opt({{"w", w}, {"b", b}}, SgdOptions{.lr = 0.5});
  // Values survive packing, and both parameters now live in one storage.
  expect_near(w, {1, 2, 3, 4, 5, 6}, 0);
  expect_near(b, {7, 8}, 0);
  EXPECT_EQ(w.storage(), b.storage());
  EXPECT_EQ(b.offset() - w.offset(), 6);
  opt.zero_grad();
  EXPECT_FALSE(w.grad().defined());  // bound as a slot: the first gradient is copied there
  // The first backward lands in the bound slots, a second sums in place: loss = sum(x @ w^T + b) over 2 rows.
  Tensor x = Tensor::ones({2, 3});
  sum(linear(x, w, b)).backward();
  ASSERT_TRUE(w.grad().defined());
  EXPECT_EQ(w.grad().storage(), opt.flat(0).grads().storage());
  EXPECT_EQ(b.grad().offset(), opt.flat(0).grads().offset() + 6);
  expect_near(opt.flat(0).grads(), {2, 2, 2, 2, 2, 2, 2, 2}, 0);
  sum(linear(x, w, b)).backward();
  expect_near(opt.flat(0).grads(), {4, 4, 4, 4, 4, 4, 4, 4}, 0);
  opt.step();
  expect_near(w, {-1, 0, 1, 2, 3, 4}, 1e-7);
  expect_near(b, {5, 6}, 1e-7);
  // A step where only w gets a gradient: b's slot still holds the last step's 4s until the step zeroes it.
  opt.zero_grad();
  sum(mul(w, Tensor::ones({2, 3}))).backward();
  EXPECT_FALSE(b.grad().defined());
  opt.step();
  expect_near(opt.flat(0).grads(), {1, 1, 1, 1, 1, 1, 0, 0}, 0);
  expect_near(b, {5, 6}, 1e-7);
  EXPECT_EQ(opt.grad_slot(b).numel(), 2);
  EXPECT_THROW(opt.grad_slot(param({1})), Error);
}

TEST(Optimizer, SparseGradientDensifiedIntoSlot) {
  Tensor e = param({0, 0, 0, 0, 0, 0}, {3, 2});
  Sgd opt({{"emb", e}}, SgdOptions{.lr = 1.0});
  // Rows 2 and 0, with row 2 twice (duplicates sum, as IndexedSlices).
  Tensor idx = Tensor::from_vector<int64_t>({2, 0, 2}, {3});
  Tensor vals = Tensor::from_vector<float>({1, 1, 2, 2, 3, 3}, {3, 2});
  e.set_grad(Tensor::sparse_rows(idx, vals, {3, 2}));
  opt.step();
  expect_near(e, {-2, -2, 0, 0, -4, -4}, 0);
}

TEST(Optimizer, UndefinedGradientSkipsParameter) {
  Tensor a = param({1}), b = param({1});
  Adam opt({{"a", a}, {"b", b}}, AdamOptions{.lr = 0.1, .weight_decay = 0.1});
  set_grad(a, {1});
  opt.step();  // b has no gradient: untouched, its step count stays 0
  expect_near(b, {1}, 0);
  EXPECT_DOUBLE_EQ(opt.state_dict().scalars.at("b/step"), 0.0);
  EXPECT_DOUBLE_EQ(opt.state_dict().scalars.at("a/step"), 1.0);
  // Its first real step is then bias-corrected as step 1 (moves by ~lr).
  a.zero_grad();
  set_grad(b, {-3});
  opt.step();
  EXPECT_NEAR(b.item(), 1.1, 1e-5);
}

TEST(Optimizer, StateDictRoundTripContinuesIdentically) {
  Generator gen(7);
  Tensor w1 = Tensor::randn({4, 3}, gen).set_requires_grad(true);
  Tensor w2 = w1.detach().clone().set_requires_grad(true);
  AdamW a({{"w", w1}}, AdamOptions{.lr = 0.05, .weight_decay = 0.01});
  auto grads = [&](int s) { return Tensor::full({4, 3}, 0.1 * (s + 1)); };
  for (int s = 0; s < 3; ++s) {
    w1.set_grad(grads(s));
    a.step();
  }
  OptimizerState st = a.state_dict();
  EXPECT_EQ(st.tensors.size(), 2u);
  ASSERT_TRUE(st.tensors.count("w/exp_avg"));
  AdamW b({{"w", w2}}, AdamOptions{.lr = 0.0, .weight_decay = 0.01});  // lr comes from the checkpoint
  w2.copy_(w1.detach());
  b.load_state_dict(st);
  EXPECT_DOUBLE_EQ(b.lr(), 0.05);
  EXPECT_EQ(b.step_count(), 3);
  for (int s = 3; s < 5; ++s) {
    w1.set_grad(grads(s));
    w2.set_grad(grads(s));
    a.step();
    b.step();
  }
  EXPECT_EQ(w1.to_vector<float>(), w2.to_vector<float>());
  // A checkpoint for another model is refused before anything changes.
  OptimizerState bad = st;
  bad.tensors["w/exp_avg"] = Tensor::zeros({2});
  EXPECT_THROW(b.load_state_dict(bad), Error);
  bad.tensors.erase("w/exp_avg");
  EXPECT_THROW(b.load_state_dict(bad), Error);
}

TEST(Optimizer, RejectsBadParameters) {
  Tensor a = param({1});
  EXPECT_THROW(Sgd({{"a", a}, {"a", param({2})}}, SgdOptions{}), Error);  // duplicate name
  EXPECT_THROW(Sgd({{"a", a}, {"b", a}}, SgdOptions{}), Error);           // same tensor twice
  Tensor d = Tensor::ones({2}, DType::F64).set_requires_grad(true);
  EXPECT_THROW(Sgd({{"d", d}}, SgdOptions{}), Error);                     // not f32
  EXPECT_THROW(Sgd({{"a", param({1})}}, SgdOptions{.lr = -1}), Error);
}

// Capturable SGD reads its learning rate from memory that set_lr writes (what a captured CUDA graph needs):
// the same updates as plain SGD across a schedule; rules with other per-step host values refuse.
TEST(Optimizer, CapturableSgdFollowsSetLr) {
  Tensor a = param({1, 2, 3}), b = param({1, 2, 3});
  Sgd plain({{"p", a}}, SgdOptions{.lr = 0.1, .momentum = 0.9});
  Sgd cap({{"p", b}}, SgdOptions{.lr = 0.1, .momentum = 0.9});
  cap.set_capturable(true);
  EXPECT_TRUE(cap.capturable());
  for (double lr : {0.1, 0.05, 0.2}) {
    plain.set_lr(lr);
    cap.set_lr(lr);
    set_grad(a, {0.5f, -1, 2});
    set_grad(b, {0.5f, -1, 2});
    plain.step();
    cap.step();
  }
  EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());
  EXPECT_EQ(cap.step_count(), 3);
  cap.note_replayed_step();
  EXPECT_EQ(cap.step_count(), 4);
  EXPECT_DOUBLE_EQ(cap.state_dict().scalars.at("p/step"), 4.0);
  EXPECT_THROW(plain.note_replayed_step(), Error);
  Tensor c = param({1});
  Lamb lamb({ParamGroup{{{"c", c}}}}, LambOptions{});
  EXPECT_THROW(lamb.set_capturable(true), Error);
}

// Capturable AdamW reads its learning rate and its step count (bias corrections) from device memory; step()
// advances the count there itself, so a replayed step counts. Same updates as plain AdamW across a
// schedule, also after a state-dict round trip (the count is rewritten from the loaded steps); a group whose
// parameters are at different step counts is refused.
TEST(Optimizer, CapturableAdamFollowsLrAndStepCount) {
  Tensor a = param({1, 2, 3}), b = param({1, 2, 3});
  const AdamOptions o{.lr = 0.01, .weight_decay = 0.1};
  AdamW plain({{"p", a}}, o);
  AdamW cap({{"p", b}}, o);
  cap.set_capturable(true);
  auto both = [&](double lr, std::vector<float> g) {
    plain.set_lr(lr);
    cap.set_lr(lr);
    set_grad(a, g);
    set_grad(b, g);
    plain.step();
    cap.step();
  };
  both(0.01, {0.5f, -1, 2});
  both(0.02, {-0.25f, 3, 1});
  AdamW resumed({{"p", b}}, o);
  resumed.set_capturable(true);
  resumed.load_state_dict(cap.state_dict());
  plain.set_lr(0.005);
  resumed.set_lr(0.005);
  set_grad(a, {1, 1, -1});
  set_grad(b, {1, 1, -1});
  plain.step();
  resumed.step();
  EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());
  EXPECT_EQ(resumed.step_count(), 3);

  Tensor c = param({1}), d = param({2});
  Adam mixed({{"c", c}, {"d", d}}, AdamOptions{});
  mixed.set_capturable(true);
  set_grad(c, {1});
  EXPECT_THROW(mixed.step(), Error);  // d has no gradient
  EXPECT_EQ(c.to_vector<float>(), std::vector<float>{1});
  EXPECT_EQ(mixed.step_count(), 0);
}
