// Kernel slots of the fused batch norm + (residual add) + ReLU used by ResNet blocks: y = relu(bn(x) [+ r]).
// The op (core/ops/batch_norm_act.cc) falls back to the unfused batch_norm / add / relu composite on devices
// that register no kernel here, so a backend may add these later without the op changing.
//
// Fusing saves whole passes over every activation of a ResNet step: the forward writes y once instead of
// writing bn(x), then bn(x) + r, then relu; the backward takes the ReLU mask from the saved output y (y > 0
// exactly when the ReLU input was > 0, or from x itself), so no separate ReLU-backward tensor is written or read.
#pragma once

#include "core/ops/dispatch.h"
#include "core/tensor/tensor.h"

namespace kolo {

// Same contract as batch_norm_fwd (core/ops/kernels/conv.h) plus `residual`: undefined, or x's shape,
// dtype and layout; y = relu(bn(x) + residual). As the composite, bn(x) and bn(x) + residual are rounded to
// x's dtype before the next step, so half-precision results match it too.
KOLO_DECLARE_KERNEL(batch_norm_act_fwd,
                    void(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& residual,
                         Tensor& running_mean, Tensor& running_var, bool training, double momentum, double eps,
                         bool channels_last, Tensor& y, Tensor& save_mean, Tensor& save_invstd));
// Gradients from dy and the forward's output y: dz = dy * (y > 0); dresidual (if defined) = dz; dx, dweight,
// dbias as batch_norm_bwd of dz. Every defined output is overwritten. Without a residual (`with_residual`
// false) a kernel may instead recompute the mask from x, the statistics and weight/bias, as its forward
// rounded bn(x), and not read y (one pass fewer over the activations in each of its two passes).
KOLO_DECLARE_KERNEL(batch_norm_act_bwd,
                    void(const Tensor& dy, const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias,
                         const Tensor& save_mean, const Tensor& save_invstd, bool training, bool channels_last,
                         bool with_residual, Tensor& dx, Tensor& dweight, Tensor& dbias, Tensor& dresidual));

// Training-mode y = relu(bn(x) + bn_r(r)) with two batch norms (weight, bias, running statistics each), each
// rounded to x's dtype before the add, as batch_norm then batch_norm_add_relu: a ResNet block whose shortcut
// is a convolution + batch norm, without the shortcut's normalised tensor in memory. Optional per device and
// per case: returns false, having done nothing, where the device has no kernel for it (the op then composes).
KOLO_DECLARE_KERNEL(batch_norm_dual_act_fwd,
                    bool(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& running_mean,
                         Tensor& running_var, const Tensor& r, const Tensor& r_weight, const Tensor& r_bias,
                         Tensor& r_running_mean, Tensor& r_running_var, double momentum, double eps,
                         bool channels_last, Tensor& y, Tensor& save_mean, Tensor& save_invstd, Tensor& r_save_mean,
                         Tensor& r_save_invstd));
// Its gradients from dy, x, r, the parameters and the saved statistics (the ReLU mask is recomputed, y is not
// needed). Every defined output is overwritten.
KOLO_DECLARE_KERNEL(batch_norm_dual_act_bwd,
                    void(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& bias,
                         const Tensor& save_mean, const Tensor& save_invstd, const Tensor& r, const Tensor& r_weight,
                         const Tensor& r_bias, const Tensor& r_save_mean, const Tensor& r_save_invstd,
                         bool channels_last, Tensor& dx, Tensor& dweight, Tensor& dbias, Tensor& dr,
                         Tensor& dr_weight, Tensor& dr_bias));

}  // namespace kolo
