// Convolutional-network layers: Conv2d, BatchNorm2d, MaxPool2d (NCHW or channels_last).
#pragma once

#include "core/ops/conv.h"
#include "models/module.h"

namespace kolo::models {

struct Conv2dSpec {
  int64_t in = 0, out = 0, kernel = 3, stride = 1, padding = 0, groups = 1;
  bool bias = false;
  bool channels_last = false;
};

// Weight [O, C/g, k, k] (channels_last: [O, k, k, C/g]) with torchvision's init: kaiming normal, fan_out.
class Conv2d : public Module {
 public:
  Conv2d(const Conv2dSpec& spec, Generator& gen);
  Tensor forward(const Tensor& x) const;
  const Tensor& weight() const { return weight_; }

 private:
  Conv2dSpec spec_;
  Tensor weight_, bias_;
};

// Batch norm over N, H, W with running statistics as buffers (weight 1, bias 0 at start).
class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t channels, bool channels_last = false, double momentum = 0.1, double eps = 1e-5);
  Tensor forward(const Tensor& x);
  // relu(forward(x)) and relu(forward(x) + residual) in one fused op (core/ops/batch_norm_act.h).
  Tensor forward_relu(const Tensor& x);
  Tensor forward_add_relu(const Tensor& x, const Tensor& residual);
  // relu(forward(x) + shortcut.forward(r)) in one fused op (batch_norm_dual_add_relu); same momentum and eps.
  Tensor forward_dual_add_relu(const Tensor& x, BatchNorm2d& shortcut, const Tensor& r);
  const Tensor& weight() const { return weight_; }
  // gamma = 0: the zero-init-residual trick (the block starts as the identity).
  void zero_weight();

 private:
  Tensor weight_, bias_, running_mean_, running_var_;
  bool channels_last_;
  double momentum_, eps_;
};

class MaxPool2d : public Module {
 public:
  MaxPool2d(int64_t kernel, int64_t stride, int64_t padding, bool channels_last = false);
  Tensor forward(const Tensor& x) const;

 private:
  Pool2dOptions opt_;
};

}  // namespace kolo::models
