// NonfiniteGuard and DynamicLossScaler in one process: detection in dense and row-sparse gradients, the
// skip and error policies (the error names the parameter), and the loss scale's backoff and growth.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "optim/nonfinite_guard.h"
#include "optim/sgd.h"

namespace kolo {
namespace {

struct Fixture {
  std::vector<NamedParameter> params{{"weight", Tensor::full({4}, 1.0).set_requires_grad(true)},
                                     {"bias", Tensor::full({2}, 1.0).set_requires_grad(true)}};
  Sgd opt{params, SgdOptions{.lr = 0.5}};
  // Gradient of sum(w * k) + sum(b * k) is k everywhere.
  void backward(double k) {
    opt.zero_grad();
    add(sum(scale(params[0].tensor, k)), sum(scale(params[1].tensor, k))).backward();
  }
};

TEST(NonfiniteGuard, FindsNaNAndInfByParameter) {
  Fixture f;
  f.backward(1.0);
  EXPECT_TRUE(nonfinite_gradients(f.opt).empty());
  f.backward(std::numeric_limits<double>::infinity());
  EXPECT_EQ(nonfinite_gradients(f.opt), (std::vector<std::string>{"weight", "bias"}));
  f.backward(1.0);
  f.params[1].tensor.grad().data<float>()[1] = std::nanf("");
  EXPECT_EQ(nonfinite_gradients(f.opt), std::vector<std::string>{"bias"});
}

TEST(NonfiniteGuard, SkipLeavesParametersAndStepCountUntouched) {
  Fixture f;
  NonfiniteGuard guard(NonfinitePolicy::SkipStep);
  f.backward(1.0);
  f.params[0].tensor.grad().data<float>()[2] = std::nanf("");
  EXPECT_FALSE(guard.allow_step(f.opt));
  EXPECT_EQ(guard.skipped_steps(), 1);
  EXPECT_EQ(guard.last_nonfinite(), std::vector<std::string>{"weight"});
  EXPECT_EQ(f.opt.step_count(), 0);
  EXPECT_EQ(f.params[0].tensor.to_vector<float>(), std::vector<float>(4, 1.f));
  f.backward(1.0);
  ASSERT_TRUE(guard.allow_step(f.opt));
  f.opt.step();
  EXPECT_EQ(f.params[0].tensor.to_vector<float>(), std::vector<float>(4, 0.5f));
}

TEST(NonfiniteGuard, ErrorPolicyNamesTheParameter) {
  Fixture f;
  NonfiniteGuard guard(NonfinitePolicy::Error);
  f.backward(1.0);
  f.params[1].tensor.grad().data<float>()[0] = -std::numeric_limits<float>::infinity();
  try {
    guard.allow_step(f.opt);
    FAIL() << "expected kolo::Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("parameter 'bias'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("NaN or Inf"), std::string::npos) << msg;
    EXPECT_NE(msg.find("step 1"), std::string::npos) << msg;
  }
  NonfiniteGuard off;  // Ignore: no check at all
  EXPECT_TRUE(off.allow_step(f.opt));
}

TEST(NonfiniteGuard, RowSparseGradientValuesAreChecked) {
  std::vector<NamedParameter> params{{"emb", Tensor::zeros({5, 2}).set_requires_grad(true)}};
  Sgd opt(params, SgdOptions{.lr = 0.1});
  Tensor idx = Tensor::from_vector(std::vector<int64_t>{1, 3}, {2});
  Tensor vals = Tensor::from_vector(std::vector<float>{1, 2, 3, std::nanf("")}, {2, 2});
  params[0].tensor.set_grad(Tensor::sparse_rows(idx, vals, {5, 2}));
  EXPECT_EQ(nonfinite_gradients(opt), std::vector<std::string>{"emb"});
}

TEST(NonfiniteGuard, ParsesPolicyNames) {
  EXPECT_EQ(parse_nonfinite_policy("skip"), NonfinitePolicy::SkipStep);
  EXPECT_EQ(parse_nonfinite_policy("error"), NonfinitePolicy::Error);
  EXPECT_EQ(parse_nonfinite_policy("ignore"), NonfinitePolicy::Ignore);
  EXPECT_THROW(parse_nonfinite_policy("skip-step"), Error);
  EXPECT_STREQ(nonfinite_policy_name(NonfinitePolicy::SkipStep), "skip");
}

TEST(DynamicLossScaler, UnscalesGrowsAndBacksOff) {
  Fixture f;
  DynamicLossScaler scaler({.init_scale = 1024, .growth_factor = 2, .backoff_factor = 0.5, .growth_interval = 2});
  // Scaled loss: gradients are 1024 * 3; unscaling gives 3 exactly (powers of two).
  f.opt.zero_grad();
  Tensor loss = add(sum(scale(f.params[0].tensor, 3.0)), sum(scale(f.params[1].tensor, 3.0)));
  EXPECT_DOUBLE_EQ(scaler.scale_loss(loss).item(), 1024.0 * loss.item());
  scaler.scale_loss(loss).backward();
  ASSERT_TRUE(scaler.unscale_and_update(f.opt));
  EXPECT_EQ(f.params[0].tensor.grad().to_vector<float>(), std::vector<float>(4, 3.f));
  EXPECT_EQ(scaler.scale(), 1024);
  EXPECT_EQ(scaler.good_steps(), 1);
  f.backward(1.0);
  ASSERT_TRUE(scaler.unscale_and_update(f.opt));
  EXPECT_EQ(scaler.scale(), 2048);  // growth_interval finite steps in a row
  EXPECT_EQ(scaler.good_steps(), 0);
  // Overflow: the step is refused, gradients are left as they were, the scale halves.
  f.backward(std::numeric_limits<double>::infinity());
  EXPECT_FALSE(scaler.unscale_and_update(f.opt));
  EXPECT_EQ(scaler.scale(), 1024);
  EXPECT_EQ(scaler.overflows(), 1);
  EXPECT_EQ(scaler.good_steps(), 0);
}

TEST(DynamicLossScaler, RespectsBoundsAndRejectsBadOptions) {
  Fixture f;
  DynamicLossScaler low({.init_scale = 2, .growth_interval = 1, .min_scale = 1, .max_scale = 4});
  for (int i = 0; i < 3; ++i) {
    f.backward(std::nan(""));
    low.unscale_and_update(f.opt);
  }
  EXPECT_EQ(low.scale(), 1);  // never below min_scale
  for (int i = 0; i < 5; ++i) {
    f.backward(1.0);
    low.unscale_and_update(f.opt);
  }
  EXPECT_EQ(low.scale(), 4);  // never above max_scale
  EXPECT_THROW(DynamicLossScaler({.backoff_factor = 1.5}), Error);
  EXPECT_THROW(DynamicLossScaler({.growth_interval = 0}), Error);
  EXPECT_THROW(DynamicLossScaler({.init_scale = -1}), Error);
}

}  // namespace
}  // namespace kolo
