// Every LR schedule against its formula evaluated independently at chosen steps.
#include <gtest/gtest.h>

#include <cmath>

#include "core/util/error.h"
#include "optim/lr_schedule.h"

using namespace kolo;

TEST(LrSchedule, Constant) {
  auto s = constant_lr(0.25);
  EXPECT_DOUBLE_EQ((*s)(0), 0.25);
  EXPECT_DOUBLE_EQ((*s)(123456), 0.25);
  EXPECT_THROW((*s)(-1), Error);
}

TEST(LrSchedule, WarmupInverseSqrt) {
  const double peak = 1e-3;
  const int64_t w = 4000;
  auto s = warmup_inverse_sqrt(peak, w);
  EXPECT_DOUBLE_EQ((*s)(0), 0.0);
  EXPECT_DOUBLE_EQ((*s)(1), peak / 4000.0);
  EXPECT_DOUBLE_EQ((*s)(1000), peak * 0.25);
  EXPECT_DOUBLE_EQ((*s)(4000), peak);
  EXPECT_DOUBLE_EQ((*s)(16000), peak * 0.5);  // sqrt(4000/16000)
  EXPECT_NEAR((*s)(100000), peak * std::sqrt(0.04), 1e-18);
  // Composed form: linear warmup into the inverse-sqrt decay gives the same values.
  auto c = linear_warmup(w, inverse_sqrt_decay(peak, w));
  for (int64_t step : {1, 7, 999, 3999, 4000, 4001, 12345, 1000000}) EXPECT_NEAR((*c)(step), (*s)(step), 1e-15) << step;
}

TEST(LrSchedule, NoamMatchesPaperFormula) {
  auto s = noam(512, 4000);
  EXPECT_DOUBLE_EQ((*s)(0), 0.0);
  // step 4000 is the peak: 512^-0.5 * 4000^-0.5.
  EXPECT_NEAR((*s)(4000), 1.0 / std::sqrt(512.0 * 4000.0), 1e-15);
  EXPECT_NEAR((*s)(100), 100.0 / std::sqrt(512.0) / std::pow(4000.0, 1.5), 1e-15);
  EXPECT_NEAR((*s)(40000), 1.0 / std::sqrt(512.0) / std::sqrt(40000.0), 1e-15);
  // The Noam form is warmup_inverse_sqrt with peak (d_model * warmup)^-0.5, times its factor.
  auto big = noam(1024, 4000, 2.0);
  auto eq = warmup_inverse_sqrt(2.0 / std::sqrt(1024.0 * 4000.0), 4000);
  for (int64_t step : {1, 50, 3999, 4000, 4001, 90000}) EXPECT_NEAR((*big)(step), (*eq)(step), 1e-15) << step;
}

TEST(LrSchedule, GoyalWarmupThenStepDecay) {
  // 256-image baseline lr 0.1 scaled to a global batch of 8192: 3.2; 1251 steps/epoch (1.28M / 1024... any).
  const double base = linear_scaling_rule(0.1, 8192, 256);
  EXPECT_DOUBLE_EQ(base, 3.2);
  const int64_t spe = 100;
  auto s = goyal_step_decay(base, 0.1, spe);
  EXPECT_DOUBLE_EQ((*s)(0), 0.1);
  EXPECT_NEAR((*s)(250), 0.1 + (3.2 - 0.1) * 250.0 / 500.0, 1e-12);  // mid-warmup (epoch 2.5 of 5)
  EXPECT_DOUBLE_EQ((*s)(500), 3.2);                                  // epoch 5
  EXPECT_DOUBLE_EQ((*s)(2999), 3.2);                                 // last step of epoch 29
  EXPECT_NEAR((*s)(3000), 0.32, 1e-12);                              // epoch 30
  EXPECT_NEAR((*s)(6000), 0.032, 1e-12);                             // epoch 60
  EXPECT_NEAR((*s)(7999), 0.032, 1e-12);
  EXPECT_NEAR((*s)(8000), 0.0032, 1e-12);                            // epoch 80
  EXPECT_NEAR((*s)(8900), 0.0032, 1e-12);
}

TEST(LrSchedule, StepDecayBoundaries) {
  auto s = step_decay(1.0, {10, 20}, 0.5);
  EXPECT_DOUBLE_EQ((*s)(9), 1.0);
  EXPECT_DOUBLE_EQ((*s)(10), 0.5);
  EXPECT_DOUBLE_EQ((*s)(25), 0.25);
  EXPECT_THROW(step_decay(1.0, {20, 10}), Error);
}

TEST(LrSchedule, Polynomial) {
  auto lin = polynomial_decay(1.0, 0.1, 100, 1.0);
  EXPECT_DOUBLE_EQ((*lin)(0), 1.0);
  EXPECT_NEAR((*lin)(50), 0.55, 1e-15);
  EXPECT_NEAR((*lin)(100), 0.1, 1e-15);
  EXPECT_NEAR((*lin)(1000), 0.1, 1e-15);
  auto quad = polynomial_decay(2.0, 0.0, 10, 2.0);
  EXPECT_NEAR((*quad)(3), 2.0 * 0.49, 1e-15);
}

TEST(LrSchedule, Cosine) {
  auto s = cosine_decay(1.0, 100, 0.1);
  EXPECT_DOUBLE_EQ((*s)(0), 1.0);
  EXPECT_NEAR((*s)(50), 0.55, 1e-15);
  EXPECT_NEAR((*s)(25), 0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI / 4)), 1e-15);
  EXPECT_NEAR((*s)(100), 0.1, 1e-15);
  EXPECT_NEAR((*s)(500), 0.1, 1e-15);
}

TEST(LrSchedule, ScaledAndDescribe) {
  auto s = scaled(cosine_decay(1.0, 10), 3.0);
  EXPECT_NEAR((*s)(5), 1.5, 1e-15);
  EXPECT_NE(s->describe().find("cos"), std::string::npos);
  EXPECT_THROW(linear_scaling_rule(0.1, 0, 256), Error);
  EXPECT_THROW(noam(0, 10), Error);
}
