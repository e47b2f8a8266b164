// Prints kolo's learning-rate schedules as tables, so their shapes can be checked by eye:
// Transformer schedules by step, ImageNet (Goyal et al.) by epoch, and the decay family.
#include <cstdio>
#include <string>
#include <vector>

#include <cxxopts.hpp>

#include "optim/lr_schedule.h"

using namespace kolo;

namespace {

void table(const std::string& title, const std::vector<std::pair<std::string, LrSchedulePtr>>& cols,
           const std::vector<int64_t>& steps, const char* step_label = "step", int64_t steps_per_unit = 1) {
  std::printf("\n# %s\n", title.c_str());
  for (const auto& [name, s] : cols) std::printf("#   %-14s %s\n", name.c_str(), s->describe().c_str());
  std::printf("%10s", step_label);
  for (const auto& c : cols) std::printf(" %14s", c.first.c_str());
  std::printf("\n");
  for (int64_t u : steps) {
    std::printf("%10lld", static_cast<long long>(u));
    for (const auto& c : cols) std::printf(" %14.6g", (*c.second)(u * steps_per_unit));
    std::printf("\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  cxxopts::Options cli("lr_schedules", "Print kolo's learning-rate schedules as tables");
  cli.add_options()("warmup", "Transformer warmup steps", cxxopts::value<int64_t>()->default_value("4000"))(
      "peak", "peak lr of warmup + inverse sqrt", cxxopts::value<double>()->default_value("0.001"))(
      "global-batch", "ImageNet global batch (linear scaling rule, base 0.1 at 256)",
      cxxopts::value<int64_t>()->default_value("8192"))("h,help", "help");
  const auto args = cli.parse(argc, argv);
  if (args.count("help")) {
    std::printf("%s\n", cli.help().c_str());
    return 0;
  }
  const int64_t warmup = args["warmup"].as<int64_t>();
  const double peak = args["peak"].as<double>();
  const int64_t global_batch = args["global-batch"].as<int64_t>();

  table("Transformer schedules", {{"warmup-isqrt", warmup_inverse_sqrt(peak, warmup)},
                                  {"noam d=512", noam(512, warmup)},
                                  {"noam d=1024", noam(1024, warmup)}},
        {0, 1, 100, 1000, 2000, warmup / 2, warmup, warmup + 1, 2 * warmup, 4 * warmup, 10 * warmup, 25 * warmup});

  const double base = linear_scaling_rule(0.1, global_batch, 256);
  const int64_t steps_per_epoch = (1281167 + global_batch - 1) / global_batch;
  std::printf("\n# linear scaling rule: 0.1 * %lld / 256 = %g; %lld steps/epoch on ImageNet-1k\n",
              static_cast<long long>(global_batch), base, static_cast<long long>(steps_per_epoch));
  table("Goyal et al. (by epoch)", {{"goyal", goyal_step_decay(base, 0.1, steps_per_epoch)}},
        {0, 1, 2, 3, 4, 5, 10, 29, 30, 59, 60, 79, 80, 89}, "epoch", steps_per_epoch);

  const int64_t total = 10000;
  table("Decay family (total 10000 steps)",
        {{"constant", constant_lr(0.1)},
         {"poly p=1", polynomial_decay(0.1, 0.001, total, 1.0)},
         {"poly p=2", polynomial_decay(0.1, 0.0, total, 2.0)},
         {"cosine", cosine_decay(0.1, total)},
         {"warmup+cos", linear_warmup(500, cosine_decay(0.1, total))}},
        {0, 250, 500, 1000, 2500, 5000, 7500, 9000, 10000, 12000});
  return 0;
}
