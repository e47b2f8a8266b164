// ResNet with its fused batch norm + ReLU ops against the same model on the unfused composite (the fallback
// of devices with no fused kernel): logits, every parameter gradient and the running statistics agree in
// training and eval mode, bottleneck and basic blocks, NCHW and channels last. The model's parameter and
// buffer names are those of torchvision either way (tests/models/resnet_test.cc checks them).
#include <gtest/gtest.h>

#include <optional>

#include "core/ops/nn.h"
#include "fused_kernels_off.h"
#include "models/resnet.h"

using namespace kolo;
using namespace kolo::models;

namespace {

ResNetConfig tiny(bool bottleneck, bool channels_last) {
  ResNetConfig c;
  c.blocks = {1, 2, 1, 1};
  c.bottleneck = bottleneck;
  c.width = 4;
  c.num_classes = 5;
  c.small_stem = true;
  c.image_size = 8;
  c.channels_last = channels_last;
  c.seed = 3;
  return c;
}

struct StepResult {
  std::vector<float> logits;
  std::vector<std::pair<std::string, std::vector<float>>> grads, buffers;
};

// One training forward (moves the running statistics), then a forward + backward in the given mode.
StepResult step(const ResNetConfig& cfg, bool training, bool fused) {
  std::optional<kolo::testing::WithoutFusedCpuKernels> off;
  if (!fused) off.emplace();
  ResNet net(cfg);
  Generator gen(9);
  const Shape xs = cfg.channels_last ? Shape{4, 8, 8, 3} : Shape{4, 3, 8, 8};
  Tensor x = Tensor::randn(xs, gen);
  Tensor y = Tensor::from_vector<int64_t>({0, 4, 2, 1}, {4});
  net.train();
  net.forward(x);
  net.train(training);
  Tensor logits = net.forward(x);
  cross_entropy(logits, y).backward();
  StepResult r;
  r.logits = logits.to_vector<float>();
  for (auto& [name, p] : net.named_parameters()) r.grads.emplace_back(name, p.grad().to_vector<float>());
  for (auto& [name, b] : net.named_buffers()) r.buffers.emplace_back(name, b.to_vector<float>());
  return r;
}

void expect_near(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i)
    ASSERT_NEAR(a[i], b[i], 1e-5 + 1e-5 * std::abs(b[i])) << what << " element " << i;
}

}  // namespace

TEST(ResNetFused, MatchesUnfusedCompositeTrainAndEval) {
  for (bool bottleneck : {true, false}) {
    for (bool cl : {false, true}) {
      for (bool training : {true, false}) {
        const std::string what = std::string(bottleneck ? "bottleneck" : "basic") + (cl ? " nhwc" : " nchw") +
                                 (training ? " train" : " eval");
        const StepResult f = step(tiny(bottleneck, cl), training, true);
        const StepResult u = step(tiny(bottleneck, cl), training, false);
        expect_near(f.logits, u.logits, what + " logits");
        ASSERT_EQ(f.grads.size(), u.grads.size());
        for (size_t i = 0; i < f.grads.size(); ++i) {
          ASSERT_EQ(f.grads[i].first, u.grads[i].first);
          expect_near(f.grads[i].second, u.grads[i].second, what + " grad " + f.grads[i].first);
        }
        ASSERT_EQ(f.buffers.size(), u.buffers.size());
        for (size_t i = 0; i < f.buffers.size(); ++i)
          expect_near(f.buffers[i].second, u.buffers[i].second, what + " buffer " + f.buffers[i].first);
      }
    }
  }
}
