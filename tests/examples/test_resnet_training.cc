// ResNet training under mpirun -np 2: convergence on the real digits set with DistributedOptimizer, and a
// resumed run reproducing the uninterrupted run's loss curve.
#include <gtest/gtest.h>

#include "examples/common/resnet_training.h"
#include "tests/examples/test_util.h"

namespace kolo::examples {
namespace {

using kolo::testing::g_runtime;

// Small stem and width 16 keep a step at ~10 ms on one core; 20 epochs of 1,500 images (460 steps at a
// global batch of 64) take about a minute on 2 loaded cores.
ResnetRunOptions digits_options() {
  ResnetRunOptions o;
  o.model = "resnet18";
  o.small_stem = true;
  o.width = 16;
  o.dataset = "digits";
  o.batch_size = 32;
  o.optimizer.name = "sgd";
  o.optimizer.momentum = 0.9;
  o.optimizer.weight_decay = 1e-3;
  o.lr = 0.4;  // per 256 images: 0.1 at the global batch of 64
  o.lr_schedule = "cosine";
  o.warmup_epochs = 1;
  o.num_workers = 1;
  o.display_every = 100;
  return o;
}

TEST(ResnetTraining, DigitsReach97PercentHeldOutAccuracy) {
  ResnetRunOptions o = digits_options();
  o.num_epochs = 20;
  const ResnetRunResult r = run_resnet(*g_runtime, o);
  EXPECT_GE(r.eval_accuracy, 0.97);
  EXPECT_GT(r.images_per_sec, 0.0);
  EXPECT_LT(r.losses.back(), 0.1);
}

TEST(ResnetTraining, ResumeGivesTheSameLossCurve) {
  ResnetRunOptions o = digits_options();
  o.width = 8;
  o.lr_schedule = "goyal";  // depends on the step alone, so a resumed run sees the same rates
  o.warmup_epochs = 0.5;
  o.decay_epochs = {1};
  o.num_batches = 40;  // crosses an epoch boundary (23 steps per epoch) after the checkpoint
  o.print = false;
  const ResnetRunResult full = run_resnet(*g_runtime, o);
  ASSERT_EQ(full.losses.size(), 40u);

  kolo::testing::ScratchDir dir("resnet_resume");
  o.checkpoint_dir = dir.path();
  o.checkpoint_every = 7;
  o.num_batches = 21;  // "interrupted" after 21 steps: the newest checkpoint is at step 21
  const ResnetRunResult first = run_resnet(*g_runtime, o);
  o.num_batches = 40;
  o.resume = true;
  const ResnetRunResult second = run_resnet(*g_runtime, o);
  ASSERT_EQ(second.first_step, 21);
  ASSERT_EQ(first.losses.size() + second.losses.size(), full.losses.size());
  for (size_t i = 0; i < full.losses.size(); ++i) {
    const double got = i < first.losses.size() ? first.losses[i] : second.losses[i - first.losses.size()];
    // Same data, same parameters, same optimizer state: the arithmetic is repeated exactly.
    EXPECT_EQ(got, full.losses[i]) << "step " << i << " on rank " << g_runtime->rank();
  }
}

}  // namespace
}  // namespace kolo::examples

int main(int argc, char** argv) { return kolo::testing::run_all_tests_distributed(argc, argv); }
