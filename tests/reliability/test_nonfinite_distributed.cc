// Non-finite gradients under mpirun: a NaN or an overflow produced on one rank only is seen by every
// rank after the allreduce, so all ranks skip the same step (replicas stay identical), or all stop with the
// same error naming the parameter, or all back off the loss scale together.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "tests/common/mpi_gtest.h"
#include "collectives/runtime.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "optim/distributed_optimizer.h"
#include "optim/sgd.h"

namespace kolo {
namespace {

Runtime* g_rt = nullptr;

struct Model {
  std::vector<NamedParameter> params{{"dense.w", Tensor::full({3}, 1.0).set_requires_grad(true)},
                                     {"dense.b", Tensor::full({2}, 1.0).set_requires_grad(true)}};
  // Gradient of w is k_w everywhere, of b is 1.
  Tensor loss(double k_w) const { return add(sum(scale(params[0].tensor, k_w)), sum(params[1].tensor)); }
};

// Rank 1's gradient of w is NaN at step 1; every other gradient is finite.
double k_for(int rank, int step) { return rank == 1 && step == 1 ? std::nan("") : 1.0 + rank; }

TEST(NonfiniteDistributed, AllRanksSkipTheSameStep) {
  Runtime& rt = *g_rt;
  Model m;
  Sgd inner(m.params, SgdOptions{.lr = 0.1});
  DistributedOptimizer opt(inner, rt, {.name_prefix = "skip.", .nonfinite = NonfinitePolicy::SkipStep});
  std::vector<bool> taken;
  for (int step = 0; step < 3; ++step) {
    opt.zero_grad();
    m.loss(k_for(rt.rank(), step)).backward();
    taken.push_back(opt.step());
  }
  EXPECT_EQ(taken, (std::vector<bool>{true, false, true}));
  EXPECT_EQ(opt.stats().skipped_steps, 1);
  EXPECT_EQ(inner.step_count(), 2);
  // Two steps of the average gradient: mean over ranks of (1 + r) = (n + 1) / 2.
  const double avg = (rt.size() + 1) / 2.0;
  for (float v : m.params[0].tensor.to_vector<float>()) EXPECT_NEAR(v, 1.0 - 2 * 0.1 * avg, 1e-6);
  for (float v : m.params[1].tensor.to_vector<float>()) EXPECT_NEAR(v, 1.0 - 2 * 0.1, 1e-6);
}

TEST(NonfiniteDistributed, AllRanksStopWithTheSameError) {
  Runtime& rt = *g_rt;
  Model m;
  Sgd inner(m.params, SgdOptions{.lr = 0.1});
  DistributedOptimizer opt(inner, rt, {.name_prefix = "err.", .nonfinite = NonfinitePolicy::Error});
  int stopped_at = -1;
  for (int step = 0; step < 3 && stopped_at < 0; ++step) {
    opt.zero_grad();
    m.loss(k_for(rt.rank(), step)).backward();
    try {
      opt.step();
    } catch (const Error& e) {
      stopped_at = step;
      EXPECT_NE(std::string(e.what()).find("parameter 'dense.w'"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(stopped_at, 1) << "on rank " << rt.rank();
  EXPECT_EQ(inner.step_count(), 1);
}

TEST(NonfiniteDistributed, LossScaleBacksOffOnEveryRank) {
  Runtime& rt = *g_rt;
  Model m;
  Sgd inner(m.params, SgdOptions{.lr = 0.1});
  DistributedOptimizer opt(inner, rt, {.name_prefix = "amp."});
  DynamicLossScaler scaler({.init_scale = 256, .growth_interval = 2});
  std::vector<double> scales;
  for (int step = 0; step < 4; ++step) {
    opt.zero_grad();
    // An fp16-style overflow on rank 1 only, at step 1.
    const double k = rt.rank() == 1 && step == 1 ? std::numeric_limits<double>::infinity() : 1.0;
    scaler.scale_loss(m.loss(k)).backward();
    opt.synchronize();
    if (scaler.unscale_and_update(opt.inner())) opt.inner().step();
    scales.push_back(scaler.scale());
  }
  // A size-1 run has no rank 1 and never overflows.
  const std::vector<double> expected =
      rt.size() > 1 ? std::vector<double>{256, 128, 128, 256} : std::vector<double>{256, 512, 512, 1024};
  EXPECT_EQ(scales, expected);
  EXPECT_EQ(inner.step_count(), rt.size() > 1 ? 3 : 4);
}

}  // namespace
}  // namespace kolo

int main(int argc, char** argv) { return kolo::testing::run_all_tests_on_every_rank(argc, argv, kolo::g_rt); }
