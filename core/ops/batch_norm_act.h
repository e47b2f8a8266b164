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

}  // namespace kolo
