// DistributedOptimizer on a small ResNet (conv, batch norm, residual adds, pooling): N ranks with batch B
// equal one process with batch N*B. Batch norm runs in eval mode (running statistics), which keeps every
// sample's gradient independent of the rest of its batch; in training mode each rank would normalise over
// its own B samples and the two runs would differ by design.
#include <gtest/gtest.h>

#include <cmath>

#include "tests/common/mpi_gtest.h"
#include "collectives/runtime.h"
#include "core/ops/nn.h"
#include "models/resnet.h"
#include "optim/distributed_optimizer.h"
#include "optim/sgd.h"

namespace kolo {
namespace {

using models::ResNet;
using models::ResNetConfig;

Runtime* g_rt = nullptr;

ResNetConfig tiny_config() {
  ResNetConfig c;
  c.blocks = {1, 1, 1, 1};
  c.bottleneck = false;
  c.num_classes = 10;
  c.in_channels = 1;
  c.width = 4;
  c.image_size = 8;
  c.small_stem = true;
  c.seed = 11;
  return c;
}

std::vector<NamedParameter> named(const ResNet& m) {
  std::vector<NamedParameter> out;
  for (const auto& [n, t] : m.named_parameters()) out.push_back({n, t});
  return out;
}

TEST(DistributedOptimizer, SmallResNetNRanksEqualsOneRankLargerBatch) {
  Runtime& rt = *g_rt;
  const int n = rt.size(), r = rt.rank();
  const int64_t B = 3;
  ResNet ref(tiny_config()), dist(tiny_config());
  ref.eval();
  dist.eval();
  auto ref_params = named(ref), dist_params = named(dist);
  const SgdOptions so{.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-4, .nesterov = false};
  Sgd ref_opt(ref_params, so);
  Sgd inner(dist_params, so);
  DistributedOptimizer opt(inner, rt);
  broadcast_parameters(rt, dist_params);
  for (int step = 0; step < 3; ++step) {
    Generator gen(500 + step);
    Tensor x = Tensor::randn({n * B, 1, 8, 8}, gen);
    std::vector<int64_t> labels;
    for (int64_t i = 0; i < n * B; ++i) labels.push_back((i * 7 + step) % 10);
    Tensor y = Tensor::from_vector(labels, {n * B});
    ref_opt.zero_grad();
    cross_entropy(ref.forward(x), y).backward();
    ref_opt.step();
    opt.zero_grad();
    cross_entropy(dist.forward(x.slice(0, r * B, (r + 1) * B)), y.slice(0, r * B, (r + 1) * B)).backward();
    opt.step();
  }
  ASSERT_EQ(ref_params.size(), dist_params.size());
  for (size_t i = 0; i < ref_params.size(); ++i) {
    const auto a = ref_params[i].tensor.to_vector<float>(), b = dist_params[i].tensor.to_vector<float>();
    double worst = 0, scale = 0;
    for (size_t k = 0; k < a.size(); ++k) {
      worst = std::max(worst, std::abs(double(a[k]) - b[k]));
      scale = std::max(scale, std::abs(double(a[k])));
    }
    // f32 sums over a different split of the batch: agreement to ~1e-6 relative.
    EXPECT_LE(worst, 2e-5 * std::max(1.0, scale)) << ref_params[i].name << " on rank " << r;
  }
}

}  // namespace
}  // namespace kolo

int main(int argc, char** argv) { return kolo::testing::run_all_tests_on_every_rank(argc, argv, kolo::g_rt); }
