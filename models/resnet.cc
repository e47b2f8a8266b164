// ResNet: BasicBlock, Bottleneck (v1.5), stages and the stem, with torchvision's initialisation. Each
// batch norm followed by a ReLU (after a residual add or not) runs as one fused op.
#include "models/resnet.h"

#include "core/ops/conv.h"

namespace kolo::models {

namespace {

Conv2dSpec conv_spec(int64_t in, int64_t out, int64_t kernel, int64_t stride, bool channels_last) {
  Conv2dSpec s;
  s.in = in;
  s.out = out;
  s.kernel = kernel;
  s.stride = stride;
  s.padding = kernel / 2;
  s.channels_last = channels_last;
  return s;
}

// 1x1 conv + BN on the shortcut when the block changes resolution or width ("downsample.0/1").
class Downsample : public Module {
 public:
  Downsample(int64_t in, int64_t out, int64_t stride, bool cl, Generator& gen) : Module("Downsample") {
    conv_ = register_module("0", std::make_shared<Conv2d>(conv_spec(in, out, 1, stride, cl), gen));
    bn_ = register_module("1", std::make_shared<BatchNorm2d>(out, cl));
  }
  Tensor forward(const Tensor& x) { return note(bn_->forward(conv_->forward(x))); }
  // relu(main_bn(main) + this shortcut of x) with the shortcut's batch norm fused into main_bn's (a summary
  // run goes through forward(), so that every layer reports its shape).
  Tensor add_relu(BatchNorm2d& main_bn, const Tensor& main, const Tensor& x) {
    if (recording_shapes()) return main_bn.forward_add_relu(main, forward(x));
    return main_bn.forward_dual_add_relu(main, *bn_, conv_->forward(x));
  }

 private:
  std::shared_ptr<Conv2d> conv_;
  std::shared_ptr<BatchNorm2d> bn_;
};

class BasicBlock : public ResidualBlock {
 public:
  static constexpr int64_t kExpansion = 1;
  BasicBlock(int64_t in, int64_t planes, int64_t stride, const ResNetConfig& c, Generator& gen)
      : ResidualBlock("BasicBlock") {
    const bool cl = c.channels_last;
    conv1_ = register_module("conv1", std::make_shared<Conv2d>(conv_spec(in, planes, 3, stride, cl), gen));
    bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(planes, cl));
    conv2_ = register_module("conv2", std::make_shared<Conv2d>(conv_spec(planes, planes, 3, 1, cl), gen));
    bn2_ = register_module("bn2", std::make_shared<BatchNorm2d>(planes, cl));
    if (stride != 1 || in != planes) downsample_ = register_module("downsample", std::make_shared<Downsample>(in, planes, stride, cl, gen));
    if (c.zero_init_residual) bn2_->zero_weight();
  }
  Tensor forward(const Tensor& x) override {
    Tensor y = bn1_->forward_relu(conv1_->forward(x));
    if (downsample_) return note(downsample_->add_relu(*bn2_, conv2_->forward(y), x));
    return note(bn2_->forward_add_relu(conv2_->forward(y), x));
  }

 private:
  std::shared_ptr<Conv2d> conv1_, conv2_;
  std::shared_ptr<BatchNorm2d> bn1_, bn2_;
  std::shared_ptr<Downsample> downsample_;
};

class Bottleneck : public ResidualBlock {
 public:
  static constexpr int64_t kExpansion = 4;
  Bottleneck(int64_t in, int64_t planes, int64_t stride, const ResNetConfig& c, Generator& gen)
      : ResidualBlock("Bottleneck") {
    const bool cl = c.channels_last;
    const int64_t out = planes * kExpansion;
    conv1_ = register_module("conv1", std::make_shared<Conv2d>(conv_spec(in, planes, 1, 1, cl), gen));
    bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(planes, cl));
    // v1.5: the stride is on the 3x3 conv, not the first 1x1 (better accuracy, as torchvision).
    conv2_ = register_module("conv2", std::make_shared<Conv2d>(conv_spec(planes, planes, 3, stride, cl), gen));
    bn2_ = register_module("bn2", std::make_shared<BatchNorm2d>(planes, cl));
    conv3_ = register_module("conv3", std::make_shared<Conv2d>(conv_spec(planes, out, 1, 1, cl), gen));
    bn3_ = register_module("bn3", std::make_shared<BatchNorm2d>(out, cl));
    if (stride != 1 || in != out) downsample_ = register_module("downsample", std::make_shared<Downsample>(in, out, stride, cl, gen));
    if (c.zero_init_residual) bn3_->zero_weight();
  }
  Tensor forward(const Tensor& x) override {
    Tensor y = bn1_->forward_relu(conv1_->forward(x));
    y = bn2_->forward_relu(conv2_->forward(y));
    if (downsample_) return note(downsample_->add_relu(*bn3_, conv3_->forward(y), x));
    return note(bn3_->forward_add_relu(conv3_->forward(y), x));
  }

 private:
  std::shared_ptr<Conv2d> conv1_, conv2_, conv3_;
  std::shared_ptr<BatchNorm2d> bn1_, bn2_, bn3_;
  std::shared_ptr<Downsample> downsample_;
};

}  // namespace

void ResNetStage::add(std::shared_ptr<ResidualBlock> block) {
  blocks_.push_back(register_module(std::to_string(blocks_.size()), std::move(block)));
}

Tensor ResNetStage::forward(const Tensor& x) {
  Tensor y = x;
  for (auto& block : blocks_) y = block->forward(y);
  return note(y);
}

ResNetConfig resnet_config(int depth, int64_t num_classes) {
  ResNetConfig c;
  c.num_classes = num_classes;
  switch (depth) {
    case 18: c.blocks = {2, 2, 2, 2}; c.bottleneck = false; break;
    case 34: c.blocks = {3, 4, 6, 3}; c.bottleneck = false; break;
    case 50: c.blocks = {3, 4, 6, 3}; break;
    case 101: c.blocks = {3, 4, 23, 3}; break;
    case 152: c.blocks = {3, 8, 36, 3}; break;
    default: KOLO_FAIL("resnet_config: depth ", depth, " is not one of 18, 34, 50, 101, 152");
  }
  return c;
}

ResNet::ResNet(const ResNetConfig& config) : Module("ResNet"), config_(config) {
  const ResNetConfig& c = config_;
  KOLO_CHECK(c.blocks.size() == 4, "ResNet: expected 4 stages, got ", c.blocks.size());
  KOLO_CHECK(c.num_classes > 0 && c.in_channels > 0 && c.width > 0, "ResNet: invalid num_classes ", c.num_classes,
             " in_channels ", c.in_channels, " width ", c.width);
  Generator gen(c.seed);
  const bool cl = c.channels_last;
  conv1_ = register_module("conv1", std::make_shared<Conv2d>(
                                        c.small_stem ? conv_spec(c.in_channels, c.width, 3, 1, cl)
                                                     : conv_spec(c.in_channels, c.width, 7, 2, cl),
                                        gen));
  bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(c.width, cl));
  if (!c.small_stem) maxpool_ = register_module("maxpool", std::make_shared<MaxPool2d>(3, 2, 1, cl));
  const int64_t expansion = c.bottleneck ? Bottleneck::kExpansion : BasicBlock::kExpansion;
  int64_t in = c.width;
  for (size_t s = 0; s < 4; ++s) {
    auto stage = register_module("layer" + std::to_string(s + 1), std::make_shared<ResNetStage>());
    stages_.push_back(stage);
    const int64_t planes = c.width << s;
    for (int64_t b = 0; b < c.blocks[s]; ++b) {
      const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
      std::shared_ptr<ResidualBlock> block;
      if (c.bottleneck)
        block = std::make_shared<Bottleneck>(in, planes, stride, c, gen);
      else
        block = std::make_shared<BasicBlock>(in, planes, stride, c, gen);
      stage->add(block);
      in = planes * expansion;
    }
  }
  fc_ = register_module("fc", std::make_shared<Linear>(in, c.num_classes, true, gen));
}

Tensor ResNet::forward(const Tensor& x) {
  const int64_t cdim = config_.channels_last ? 3 : 1;
  KOLO_CHECK(x.dim() == 4 && x.size(cdim) == config_.in_channels, "ResNet: expected input ",
             config_.channels_last ? "[N, H, W, " : "[N, ", config_.in_channels,
             config_.channels_last ? "]" : ", H, W]", ", got ", x.describe());
  Tensor y = bn1_->forward_relu(conv1_->forward(x));
  if (maxpool_) y = maxpool_->forward(y);
  for (auto& stage : stages_) y = stage->forward(y);
  return note(fc_->forward(global_avg_pool2d(y, config_.channels_last)));
}

Tensor ResNet::example_input(int64_t batch) const {
  const ResNetConfig& c = config_;
  return c.channels_last ? Tensor::zeros({batch, c.image_size, c.image_size, c.in_channels})
                         : Tensor::zeros({batch, c.in_channels, c.image_size, c.image_size});
}

std::shared_ptr<ResNet> make_resnet(const std::string& name, int64_t num_classes) {
  for (int depth : {18, 34, 50, 101, 152})
    if (name == "resnet" + std::to_string(depth)) return std::make_shared<ResNet>(resnet_config(depth, num_classes));
  KOLO_FAIL("make_resnet: unknown model '", name, "' (resnet18, resnet34, resnet50, resnet101, resnet152)");
}

}  // namespace kolo::models
