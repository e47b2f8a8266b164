// ResNet: torchvision parameter counts and names, initialisation, shapes in both layouts, training, gradients.
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops/nn.h"
#include "core/ops/reduce.h"
#include "models/resnet.h"
#include "tests/models/model_test_util.h"

using namespace kolo;
using namespace kolo::models;

namespace {

// 8 channels, one basic block per stage, 3x3 stem: a ResNet small enough to train in a unit test.
ResNetConfig tiny_config(int64_t classes, bool channels_last = false) {
  ResNetConfig c;
  c.blocks = {1, 1, 1, 1};
  c.bottleneck = false;
  c.width = 4;
  c.num_classes = classes;
  c.small_stem = true;
  c.image_size = 8;
  c.channels_last = channels_last;
  c.seed = 11;
  return c;
}

Tensor find(const Module& m, const std::string& name) {
  for (auto& [n, t] : m.named_parameters())
    if (n == name) return t;
  for (auto& [n, t] : m.named_buffers())
    if (n == name) return t;
  ADD_FAILURE() << "no tensor " << name;
  return Tensor();
}

}  // namespace

TEST(ResNet, ParameterCountsNamesAndInitMatchTorchvision) {
  // torchvision.models.resnetXX(num_classes=1000) parameter counts. (101: 44,549,160 and 152: 60,192,808
  // only add bottleneck blocks already covered by 50; they are left out to keep the test fast.)
  EXPECT_EQ(make_resnet("resnet18")->parameter_count(), 11689512);
  EXPECT_EQ(make_resnet("resnet34")->parameter_count(), 21797672);
  EXPECT_THROW(make_resnet("resnet51"), Error);
  auto cfg = resnet_config(50);
  cfg.zero_init_residual = true;
  ResNet net(cfg);
  EXPECT_EQ(net.parameter_count(), 25557032);
  // 10 classes: fc shrinks from 2048*1000+1000 to 2048*10+10.
  auto cfg10 = tiny_config(10);
  cfg10.width = 64;
  cfg10.blocks = {3, 4, 6, 3};
  cfg10.bottleneck = true;
  cfg10.small_stem = false;
  EXPECT_EQ(ResNet(cfg10).parameter_count(), 25557032 - 2049000 + 20490);
  EXPECT_EQ(find(net, "conv1.weight").shape(), (Shape{64, 3, 7, 7}));
  // v1.5: the stride-2 3x3 conv sits in conv2 of the first block of layer2.
  EXPECT_EQ(find(net, "layer2.0.conv2.weight").shape(), (Shape{128, 128, 3, 3}));
  EXPECT_EQ(find(net, "layer2.0.downsample.0.weight").shape(), (Shape{512, 256, 1, 1}));
  EXPECT_EQ(find(net, "layer4.2.bn3.running_var").shape(), (Shape{2048}));
  EXPECT_EQ(find(net, "fc.weight").shape(), (Shape{1000, 2048}));
  // Kaiming normal, fan_out: std sqrt(2 / (256 * 3 * 3)) for layer3's 3x3 convs.
  const std::vector<float> w = find(net, "layer3.1.conv2.weight").to_vector<float>();
  double sq = 0;
  for (float v : w) sq += double(v) * v;
  EXPECT_NEAR(std::sqrt(sq / w.size()), std::sqrt(2.0 / (256 * 9)), 0.002);
  for (float v : find(net, "layer1.0.bn1.weight").to_vector<float>()) EXPECT_EQ(v, 1.0f);
  for (float v : find(net, "layer1.0.bn1.bias").to_vector<float>()) EXPECT_EQ(v, 0.0f);
  for (float v : find(net, "layer1.0.bn3.weight").to_vector<float>()) EXPECT_EQ(v, 0.0f);  // zero-init residual
  for (float v : find(net, "layer1.0.bn2.weight").to_vector<float>()) EXPECT_EQ(v, 1.0f);
}

TEST(ResNet, OutputShapesSmallAndStandardStem) {
  ResNet tiny(tiny_config(7));
  Generator gen(1);
  EXPECT_EQ(tiny.forward(Tensor::randn({2, 3, 8, 8}, gen)).shape(), (Shape{2, 7}));
  EXPECT_EQ(tiny.forward(Tensor::randn({1, 3, 28, 28}, gen)).shape(), (Shape{1, 7}));
  auto cfg = tiny_config(5);
  cfg.small_stem = false;
  cfg.bottleneck = true;
  ResNet standard(cfg);
  standard.set_record_shapes(true);
  EXPECT_EQ(standard.forward(Tensor::randn({2, 3, 64, 64}, gen)).shape(), (Shape{2, 5}));
  // 64 -> conv1 /2 -> maxpool /2 -> layer2..4 /8: 2x2 spatial, 4 * 8 * 4 = 128 channels after layer4.
  EXPECT_NE(summary(standard).find("[2, 128, 2, 2]"), std::string::npos) << summary(standard);
  EXPECT_THROW(tiny.forward(Tensor::randn({2, 1, 8, 8}, gen)), Error);
}

TEST(ResNet, ChannelsLastMatchesNCHW) {
  ResNet nchw(tiny_config(3, false));
  ResNet nhwc(tiny_config(3, true));
  StateDict sd = nchw.state_dict();
  for (auto& [name, t] : sd)
    if (t.dim() == 4) t = t.permute({0, 2, 3, 1}).contiguous();  // OIHW -> OHWI
  nhwc.load_state_dict(sd);
  Generator gen(2);
  Tensor x = Tensor::randn({3, 3, 8, 8}, gen);
  for (bool training : {true, false}) {
    nchw.train(training);
    nhwc.train(training);
    const std::vector<float> a = nchw.forward(x).to_vector<float>();
    const std::vector<float> b = nhwc.forward(x.permute({0, 2, 3, 1}).contiguous()).to_vector<float>();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-4) << "training " << training << " i " << i;
  }
}

TEST(ResNet, TinyModelOverfitsAHandfulOfImages) {
  ResNet net(tiny_config(4));
  Generator gen(3);
  Tensor x = Tensor::randn({8, 3, 8, 8}, gen);
  Tensor y = Tensor::from_vector<int64_t>({0, 1, 2, 3, 0, 1, 2, 3}, {8});
  kolo::testing::TestAdam adam(net.parameters(), 0.01);
  double first = 0, last = 0;
  for (int step = 0; step < 40; ++step) {
    Tensor loss = cross_entropy(net.forward(x), y);
    if (step == 0) first = loss.item();
    last = loss.item();
    loss.backward();
    adam.step();
  }
  EXPECT_LT(last, 0.1 * first) << "first " << first << " last " << last;
  net.eval();
  const std::vector<int64_t> pred = argmax(net.forward(x), 1).to_vector<int64_t>();
  int correct = 0;
  for (int i = 0; i < 8; ++i) correct += pred[i] == i % 4;
  EXPECT_GE(correct, 7);
}

TEST(ResNet, StateDictRoundTripIncludesBatchNormStatistics) {
  ResNet a(tiny_config(3));
  Generator gen(5);
  Tensor x = Tensor::randn({4, 3, 8, 8}, gen);
  a.forward(x);  // training mode: running statistics move away from 0 / 1
  StateDict sd = a.state_dict();
  EXPECT_EQ(sd.count("layer1.0.bn1.running_mean"), 1u);
  auto cfg = tiny_config(3);
  cfg.seed = 99;
  ResNet b(cfg);
  b.load_state_dict(sd);
  a.eval();
  b.eval();
  EXPECT_EQ(a.forward(x).to_vector<float>(), b.forward(x).to_vector<float>());
}

TEST(ResNet, GradientCheckF64) {
  auto cfg = tiny_config(3);
  cfg.width = 2;
  ResNet net(cfg);
  net.to(DType::F64);
  Generator gen(4);
  Tensor x = Tensor::randn({4, 3, 4, 4}, gen, DType::F64);
  Tensor y = Tensor::from_vector<int64_t>({0, 1, 2, 1}, {4});
  // Training-mode BN (batch statistics) is part of the checked function; running stats only drift.
  kolo::testing::expect_model_gradcheck(net, [&] { return cross_entropy(net.forward(x), y); }, 2, 1e-6, 1e-5);
}
