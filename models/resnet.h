// ResNet 18/34/50/101/152 as torchvision builds them (bottleneck v1.5: the stride sits on the 3x3 conv),
// with a small-stem option for tiny images and NCHW or channels_last activations.
//
// Parameter names follow torchvision ("layer1.0.conv1.weight", "layer2.0.downsample.0.weight", "fc.bias"),
// so counts and checkpoints line up with it: ResNet-50 at 1000 classes has 25,557,032 parameters.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "models/layers/basic.h"
#include "models/layers/conv.h"
#include "models/module.h"

namespace kolo::models {

struct ResNetConfig {
  std::vector<int64_t> blocks{3, 4, 6, 3};  // residual blocks per stage (four stages)
  bool bottleneck = true;                    // Bottleneck (x4 expansion) or BasicBlock
  int64_t num_classes = 1000;
  int64_t in_channels = 3;
  int64_t width = 64;          // channels of the stem and first stage; doubles each stage
  int64_t image_size = 224;    // the input height/width the model is meant for (summary, examples)
  // 3x3 stride-1 stem without max-pool (CIFAR style) so 8x8 or 28x28 images keep spatial size.
  bool small_stem = false;
  bool channels_last = false;  // activations NHWC, conv weights OHWI
  // Zero gamma of the last BN in each block so every block starts as the identity (Goyal et al. 2017).
  bool zero_init_residual = false;
  uint64_t seed = 0;
};

// The standard configuration for depth 18, 34, 50, 101 or 152; throws on other depths.
ResNetConfig resnet_config(int depth, int64_t num_classes = 1000);

class ResidualBlock : public Module {
 public:
  using Module::Module;
  virtual Tensor forward(const Tensor& x) = 0;
};

// One stage (torchvision's layerN): blocks named "0", "1", ... run in order.
class ResNetStage : public Module {
 public:
  ResNetStage() : Module("Stage") {}
  void add(std::shared_ptr<ResidualBlock> block);
  Tensor forward(const Tensor& x);

 private:
  std::vector<std::shared_ptr<ResidualBlock>> blocks_;
};

class ResNet : public Module {
 public:
  explicit ResNet(const ResNetConfig& config);
  // x [N, C, H, W] (channels_last: [N, H, W, C]) -> logits [N, num_classes].
  Tensor forward(const Tensor& x);
  const ResNetConfig& config() const { return config_; }
  // A zero input of the configured size for `batch` images in the configured layout.
  Tensor example_input(int64_t batch = 1) const;

 private:
  ResNetConfig config_;
  std::shared_ptr<Conv2d> conv1_;
  std::shared_ptr<BatchNorm2d> bn1_;
  std::shared_ptr<MaxPool2d> maxpool_;
  std::vector<std::shared_ptr<ResNetStage>> stages_;
  std::shared_ptr<Linear> fc_;
};

// "resnet50" -> ResNet-50 at `num_classes`; throws naming the accepted names otherwise.
std::shared_ptr<ResNet> make_resnet(const std::string& name, int64_t num_classes = 1000);

}  // namespace kolo::models
