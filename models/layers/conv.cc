// Conv2d, BatchNorm2d, MaxPool2d over the core conv ops.
#include "models/layers/conv.h"

#include "core/autograd/grad_mode.h"
#include "core/ops/batch_norm_act.h"
#include "models/layers/init.h"

namespace kolo::models {

Conv2d::Conv2d(const Conv2dSpec& spec, Generator& gen) : Module("Conv2d"), spec_(spec) {
  KOLO_CHECK(spec.in > 0 && spec.out > 0 && spec.kernel > 0 && spec.groups > 0 && spec.in % spec.groups == 0 &&
                 spec.out % spec.groups == 0,
             "Conv2d: invalid spec in=", spec.in, " out=", spec.out, " kernel=", spec.kernel, " groups=", spec.groups);
  const int64_t cg = spec.in / spec.groups, k = spec.kernel;
  const Shape shape = spec.channels_last ? Shape{spec.out, k, k, cg} : Shape{spec.out, cg, k, k};
  weight_ = register_parameter("weight", init::kaiming_normal_fan_out(shape, spec.out * k * k, gen));
  if (spec.bias) bias_ = register_parameter("bias", Tensor::zeros({spec.out}));
}

Tensor Conv2d::forward(const Tensor& x) const {
  Conv2dOptions opt;
  opt.stride = {spec_.stride, spec_.stride};
  opt.padding = {spec_.padding, spec_.padding};
  opt.groups = spec_.groups;
  opt.channels_last = spec_.channels_last;
  return note(conv2d(x, weight_, bias_, opt));
}

BatchNorm2d::BatchNorm2d(int64_t channels, bool channels_last, double momentum, double eps)
    : Module("BatchNorm2d"), channels_last_(channels_last), momentum_(momentum), eps_(eps) {
  KOLO_CHECK(channels > 0, "BatchNorm2d: channels must be positive, got ", channels);
  weight_ = register_parameter("weight", Tensor::ones({channels}));
  bias_ = register_parameter("bias", Tensor::zeros({channels}));
  running_mean_ = register_buffer("running_mean", Tensor::zeros({channels}));
  running_var_ = register_buffer("running_var", Tensor::ones({channels}));
}

void BatchNorm2d::zero_weight() {
  NoGradGuard ng;
  weight_.zero_();
}

Tensor BatchNorm2d::forward(const Tensor& x) {
  return note(batch_norm(x, weight_, bias_, running_mean_, running_var_, is_training(), momentum_, eps_,
                         channels_last_));
}

Tensor BatchNorm2d::forward_relu(const Tensor& x) {
  return note(batch_norm_relu(x, weight_, bias_, running_mean_, running_var_, is_training(), momentum_, eps_,
                              channels_last_));
}

Tensor BatchNorm2d::forward_add_relu(const Tensor& x, const Tensor& residual) {
  return note(batch_norm_add_relu(x, residual, weight_, bias_, running_mean_, running_var_, is_training(), momentum_,
                                  eps_, channels_last_));
}

Tensor BatchNorm2d::forward_dual_add_relu(const Tensor& x, BatchNorm2d& shortcut, const Tensor& r) {
  KOLO_CHECK(shortcut.momentum_ == momentum_ && shortcut.eps_ == eps_ && shortcut.channels_last_ == channels_last_,
             "BatchNorm2d::forward_dual_add_relu: the shortcut's batch norm differs in momentum, eps or layout");
  KOLO_CHECK(shortcut.is_training() == is_training(),
             "BatchNorm2d::forward_dual_add_relu: one batch norm is in training mode and the other is not");
  return note(batch_norm_dual_add_relu(x, {weight_, bias_, &running_mean_, &running_var_}, r,
                                       {shortcut.weight_, shortcut.bias_, &shortcut.running_mean_,
                                        &shortcut.running_var_},
                                       is_training(), momentum_, eps_, channels_last_));
}

MaxPool2d::MaxPool2d(int64_t kernel, int64_t stride, int64_t padding, bool channels_last) : Module("MaxPool2d") {
  opt_.kernel = {kernel, kernel};
  opt_.stride = {stride, stride};
  opt_.padding = {padding, padding};
  opt_.channels_last = channels_last;
}

Tensor MaxPool2d::forward(const Tensor& x) const { return note(max_pool2d(x, opt_)); }

}  // namespace kolo::models
