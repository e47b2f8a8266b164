// Fused batch norm + ReLU and batch norm + residual add + ReLU: the two shapes in which ResNet blocks end,
// computed in one pass over the activations forward and two backward (see core/ops/kernels/batch_norm_act.h).
// Results equal relu(batch_norm(x)) and relu(add(batch_norm(x), residual)) (core/ops/conv.h) — on devices with
// no fused kernel that composite is what runs.
#pragma once

#include "core/tensor/tensor.h"

namespace kolo {

// relu(batch_norm(x, ...)); arguments as batch_norm.
Tensor batch_norm_relu(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& running_mean,
                       Tensor& running_var, bool training, double momentum = 0.1, double eps = 1e-5,
                       bool channels_last = false);

// relu(batch_norm(x, ...) + residual); residual has x's shape, dtype and device (any strides).
Tensor batch_norm_add_relu(const Tensor& x, const Tensor& residual, const Tensor& weight, const Tensor& bias,
                           Tensor& running_mean, Tensor& running_var, bool training, double momentum = 0.1,
                           double eps = 1e-5, bool channels_last = false);

// The affine parameters and running statistics of one batch norm.
struct BatchNormParams {
  Tensor weight, bias;
  Tensor* running_mean;
  Tensor* running_var;
};

// relu(batch_norm(x, p) + batch_norm(r, rp)), both with `training`, momentum and eps: a ResNet block whose
// shortcut is a convolution + batch norm. Where the device fuses it the shortcut's normalised tensor is never
// stored (forward: one apply pass reads x and r; backward: one pass for both norms' sums, one for dx and dr).
Tensor batch_norm_dual_add_relu(const Tensor& x, const BatchNormParams& p, const Tensor& r, const BatchNormParams& rp,
                                bool training, double momentum = 0.1, double eps = 1e-5, bool channels_last = false);

}  // namespace kolo
