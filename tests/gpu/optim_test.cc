// Optimizers on the GPU: the same optimizer code (flat buffers on the parameters' device, CUDA update
// kernels behind optim/update_kernels) must take the same steps as on the CPU. Each test builds identical
// parameters on both devices, feeds identical gradients for several steps and compares parameters and
// optimizer state. Sizes are odd and offsets unaligned on purpose (vector and scalar kernel paths, tails).
#include <gtest/gtest.h>

#include <functional>
#include <memory>

#include "core/autograd/grad_mode.h"
#include "optim/adam.h"
#include "optim/lamb.h"
#include "optim/lars.h"
#include "optim/sgd.h"
#include "tests/gpu/gpu_test_util.h"

namespace kolo {
namespace {

using testing::GpuTest;
using testing::random_cpu;
using testing::relative_error;

const std::vector<Shape> kShapes = {{3, 5}, {7}, {64, 33}, {1}, {4099}, {16, 3, 3, 3}, {1 << 16}};

std::vector<NamedParameter> make_params(Device dev) {
  std::vector<NamedParameter> ps;
  for (size_t i = 0; i < kShapes.size(); ++i) {
    Tensor t = random_cpu(kShapes[i], DType::F32, -1.0, 1.0, 100 + i).to(dev).set_requires_grad(true);
    ps.push_back({"p" + std::to_string(i), t});
  }
  return ps;
}

using MakeOpt = std::function<std::unique_ptr<Optimizer>(std::vector<ParamGroup>)>;

// Two groups (the 1-D parameters form the second, as decay_groups does); parameter 3 gets no gradient on
// step 2 (skipped, then a step count of its own), and `clip` > 0 turns on global-norm clipping.
void expect_same_steps(const MakeOpt& make, double clip = 0.0, int steps = 4, double tol = 1e-5) {
  std::vector<NamedParameter> cpu = make_params(Device::cpu()), gpu = make_params(Device::cuda(0));
  std::unique_ptr<Optimizer> ocpu = make(decay_groups(cpu)), ogpu = make(decay_groups(gpu));
  ocpu->set_clip_grad_norm(clip);
  ogpu->set_clip_grad_norm(clip);
  for (int s = 0; s < steps; ++s) {
    ocpu->zero_grad();
    ogpu->zero_grad();
    for (size_t i = 0; i < cpu.size(); ++i) {
      if (s == 1 && i == 3) {
        cpu[i].tensor.set_grad(Tensor());
        gpu[i].tensor.set_grad(Tensor());
        continue;
      }
      const Tensor g = random_cpu(kShapes[i], DType::F32, -2.0, 2.0, 1000 * (s + 1) + i);
      cpu[i].tensor.set_grad(g);
      gpu[i].tensor.set_grad(g.to(Device::cuda(0)));
    }
    ocpu->step();
    ogpu->step();
    EXPECT_NEAR(ogpu->last_grad_norm(), ocpu->last_grad_norm(), 1e-9 * ocpu->last_grad_norm()) << "step " << s;
    for (size_t i = 0; i < cpu.size(); ++i) {
      ASSERT_TRUE(gpu[i].tensor.device().is_cuda());
      EXPECT_LT(relative_error(gpu[i].tensor, cpu[i].tensor), tol) << ocpu->kind() << " step " << s << " " << cpu[i].name;
    }
  }
  const OptimizerState a = ocpu->state_dict(), b = ogpu->state_dict();
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [k, t] : a.tensors) EXPECT_LT(relative_error(b.tensors.at(k), t), tol) << k;
  for (const auto& [k, v] : a.scalars) EXPECT_EQ(b.scalars.at(k), v) << k;
}

class GpuOptimizer : public GpuTest {};

TEST_F(GpuOptimizer, FlatBuffersLiveOnTheParametersDevice) {
  std::vector<NamedParameter> ps = make_params(gpu());
  Sgd opt(ps, SgdOptions{.lr = 0.1, .momentum = 0.9});
  EXPECT_TRUE(opt.flat(0).device().is_cuda());
  EXPECT_TRUE(opt.flat(0).values().device().is_cuda());
  EXPECT_TRUE(opt.flat(0).grads().device().is_cuda());
  EXPECT_TRUE(opt.state_dict().tensors.at("p0/momentum_buffer").device().is_cuda());
  for (const NamedParameter& p : ps) EXPECT_EQ(p.tensor.storage(), opt.flat(0).values().storage()) << p.name;
}

TEST_F(GpuOptimizer, SgdPlain) {
  expect_same_steps([](std::vector<ParamGroup> g) { return std::make_unique<Sgd>(std::move(g), SgdOptions{.lr = 0.05}); });
}

TEST_F(GpuOptimizer, SgdMomentumDampeningWeightDecay) {
  expect_same_steps([](std::vector<ParamGroup> g) {
    return std::make_unique<Sgd>(std::move(g),
                                 SgdOptions{.lr = 0.05, .momentum = 0.9, .dampening = 0.1, .weight_decay = 1e-2});
  });
}

TEST_F(GpuOptimizer, SgdNesterov) {
  expect_same_steps([](std::vector<ParamGroup> g) {
    return std::make_unique<Sgd>(std::move(g), SgdOptions{.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-4,
                                                          .nesterov = true});
  });
}

TEST_F(GpuOptimizer, AdamL2) {
  expect_same_steps([](std::vector<ParamGroup> g) {
    return std::make_unique<Adam>(std::move(g), AdamOptions{.lr = 1e-2, .weight_decay = 1e-2});
  });
}

TEST_F(GpuOptimizer, AdamWDecoupled) {
  expect_same_steps([](std::vector<ParamGroup> g) {
    return std::make_unique<AdamW>(std::move(g), AdamOptions{.lr = 1e-2, .weight_decay = 0.1});
  });
}

TEST_F(GpuOptimizer, Lars) {
  expect_same_steps([](std::vector<ParamGroup> g) {
    return std::make_unique<Lars>(std::move(g), LarsOptions{.lr = 0.5, .momentum = 0.9, .weight_decay = 1e-4});
  });
}

TEST_F(GpuOptimizer, Lamb) {
  expect_same_steps([](std::vector<ParamGroup> g) {
    return std::make_unique<Lamb>(std::move(g), LambOptions{.lr = 1e-2, .weight_decay = 1e-2});
  });
}

TEST_F(GpuOptimizer, GlobalNormClippingWithAdam) {
  // Gradients of norm ~ 190 clipped to 1: the scale is applied on the device before the update.
  expect_same_steps([](std::vector<ParamGroup> g) { return std::make_unique<Adam>(std::move(g), AdamOptions{.lr = 1e-2}); },
                    1.0);
}

TEST_F(GpuOptimizer, StateDictRoundTripAcrossDevices) {
  // A checkpoint taken on the GPU resumes on the CPU with the same next step.
  std::vector<NamedParameter> gp = make_params(gpu()), cp = make_params(Device::cpu());
  Adam og(gp, AdamOptions{.lr = 1e-2}), oc(cp, AdamOptions{.lr = 1e-2});
  og.zero_grad();
  for (size_t i = 0; i < gp.size(); ++i) gp[i].tensor.set_grad(random_cpu(kShapes[i], DType::F32, -1, 1, 7 + i).to(gpu()));
  og.step();
  oc.load_state_dict(og.state_dict());
  {
    NoGradGuard ng;
    for (size_t i = 0; i < gp.size(); ++i) cp[i].tensor.copy_(gp[i].tensor.to(Device::cpu()));
  }
  og.zero_grad();
  oc.zero_grad();
  for (size_t i = 0; i < gp.size(); ++i) {
    const Tensor g = random_cpu(kShapes[i], DType::F32, -1, 1, 70 + i);
    gp[i].tensor.set_grad(g.to(gpu()));
    cp[i].tensor.set_grad(g);
  }
  og.step();
  oc.step();
  for (size_t i = 0; i < gp.size(); ++i) EXPECT_LT(relative_error(gp[i].tensor, cp[i].tensor), 1e-5) << gp[i].name;
}

}  // namespace
}  // namespace kolo
