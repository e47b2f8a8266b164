// Transformer training under mpirun -np 2: a held-out sequence-reversal task learned to BLEU >= 90, warmup
// making the difference at a high learning rate, and a resumed run reproducing the uninterrupted loss curve
// (also with dropout, whose generators travel in the checkpoint, and in bf16 with f32 master weights).
#include <gtest/gtest.h>

#include <cmath>

#include "examples/common/transformer_training.h"
#include "tests/examples/test_util.h"

namespace kolo::examples {
namespace {

using kolo::testing::g_runtime;

// The tiny model (d 64, 2+2 layers, no dropout) on reversal of 4-10 tokens over a 28-symbol alphabet:
// ~0.35 s a step at 1,024 padded tokens per rank on 2 loaded cores.
TransformerRunOptions reverse_options() {
  TransformerRunOptions o;
  o.model = "tiny";
  o.dataset = "reverse";
  o.vocab = 32;
  o.min_len = 4;
  o.max_len = 10;
  o.train_sentences = 20000;
  o.test_sentences = 200;
  o.tokens_per_rank = 1024;
  o.lr = 5e-3;
  o.lr_schedule = "inverse_sqrt";
  o.warmup_steps = 40;
  o.display_every = 50;
  o.show_translations = 2;
  return o;
}

TEST(TransformerTraining, ReversalReachesBleu90OnHeldOutSequences) {
  TransformerRunOptions o = reverse_options();
  o.steps = 320;
  const TransformerRunResult r = run_transformer(*g_runtime, o);
  EXPECT_FALSE(r.diverged);
  EXPECT_GE(r.bleu, 90.0);
  EXPECT_GT(r.tokens_per_sec, 0.0);
}

// As in the seed: at a peak lr of 0.01, Adam (0.9, 0.98) on a post-norm Transformer without warmup falls into
// the uniform-output solution (loss stays at ln(28) = 3.33, the entropy of the 28 symbols; BLEU 0) or
// produces non-finite values, while linear warmup + inverse-sqrt decay at the same peak trains.
TEST(TransformerTraining, WarmupMattersAtHighLearningRate) {
  TransformerRunOptions o = reverse_options();
  o.train_sentences = 5000;
  o.test_sentences = 50;
  o.steps = 100;
  o.lr = 0.01;
  o.display_every = 25;
  o.show_translations = 0;
  o.lr_schedule = "constant";
  o.warmup_steps = 0;
  const TransformerRunResult cold = run_transformer(*g_runtime, o);
  o.lr_schedule = "inverse_sqrt";
  o.warmup_steps = 40;
  const TransformerRunResult warm = run_transformer(*g_runtime, o);

  auto tail_mean = [](const std::vector<double>& l) {
    double s = 0;
    for (size_t i = l.size() - 10; i < l.size(); ++i) s += l[i];
    return s / 10;
  };
  const double uniform = std::log(28.0);
  EXPECT_TRUE(cold.diverged || !std::isfinite(tail_mean(cold.losses)) || tail_mean(cold.losses) > 0.95 * uniform)
      << "no warmup: final loss " << tail_mean(cold.losses);
  ASSERT_FALSE(warm.diverged);
  EXPECT_LT(tail_mean(warm.losses), 0.75 * uniform) << "with warmup";
  EXPECT_GT(warm.bleu, cold.diverged ? 0.0 : cold.bleu + 10.0);
}

// Runs `o` for 12 steps uninterrupted, then 5 steps (checkpoint) + a resumed run to 12, and returns both
// loss curves (the second concatenated).
std::pair<std::vector<double>, std::vector<double>> full_and_resumed(TransformerRunOptions o, const std::string& tag) {
  o.train_sentences = 2000;
  o.test_sentences = 8;
  o.steps = 12;
  o.print = false;
  const TransformerRunResult full = run_transformer(*g_runtime, o);

  kolo::testing::ScratchDir dir(tag);
  o.checkpoint_dir = dir.path();
  o.checkpoint_every = 5;
  o.steps = 5;
  const TransformerRunResult first = run_transformer(*g_runtime, o);
  o.steps = 12;
  o.resume = true;
  const TransformerRunResult second = run_transformer(*g_runtime, o);
  std::vector<double> resumed = first.losses;
  resumed.insert(resumed.end(), second.losses.begin(), second.losses.end());
  return {full.losses, resumed};
}

void expect_same_curve(const std::vector<double>& full, const std::vector<double>& resumed) {
  ASSERT_EQ(resumed.size(), full.size());
  for (size_t i = 0; i < full.size(); ++i)
    EXPECT_EQ(resumed[i], full[i]) << "step " << i << " on rank " << g_runtime->rank();
}

TEST(TransformerTraining, ResumeGivesTheSameLossCurve) {
  auto [full, resumed] = full_and_resumed(reverse_options(), "transformer_resume");
  expect_same_curve(full, resumed);
}

// Dropout masks come from the model's generators: the resumed run must continue their streams where the
// checkpoint left them, or the curves part at step 6. The dropout-free curve differs from this one, so
// dropout is really active.
TEST(TransformerTraining, ResumeWithDropoutGivesTheSameLossCurve) {
  TransformerRunOptions o = reverse_options();
  o.dropout = 0.3;
  auto [full, resumed] = full_and_resumed(o, "transformer_resume_dropout");
  expect_same_curve(full, resumed);
  o.dropout = 0.0;
  o.train_sentences = 2000;
  o.test_sentences = 8;
  o.steps = 12;
  o.print = false;
  const TransformerRunResult plain = run_transformer(*g_runtime, o);
  EXPECT_NE(plain.losses, full) << "dropout 0.3 changed nothing";
}

// bf16 with f32 master weights and dropout: the checkpoint's masters (not the rounded bf16 parameters)
// carry the state, so the resumed curve is again identical.
TEST(TransformerTraining, Bf16ResumeWithDropoutGivesTheSameLossCurve) {
  TransformerRunOptions o = reverse_options();
  o.dropout = 0.3;
  o.precision = Precision::BF16;
  auto [full, resumed] = full_and_resumed(o, "transformer_resume_bf16");
  expect_same_curve(full, resumed);
  EXPECT_LT(full.back(), full.front()) << "bf16 training did not lower the loss";
}

}  // namespace
}  // namespace kolo::examples

int main(int argc, char** argv) { return kolo::testing::run_all_tests_distributed(argc, argv); }
