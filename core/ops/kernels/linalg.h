// Matrix-multiply kernels: batched GEMM on 3-D operands, and fused linear layers where a device has them.
#pragma once

#include "core/ops/dispatch.h"
#include "core/tensor/tensor.h"

namespace kolo {

// c[b] = alpha * op(a[b]) @ op(b[b]) + beta * c[b]; a, b are 3-D with a batch stride of 0 allowed
// (broadcast), unit stride in one of their last two dims; c is contiguous [B, M, N]. op = transpose when
// the flag is set. All three share a floating dtype.
KOLO_DECLARE_KERNEL(gemm, void(const Tensor& a, const Tensor& b, Tensor& c, bool trans_a, bool trans_b,
                               double alpha, double beta));

// Linear layer with bias in one pass: y = x @ w^T + bias, or with `relu` y = relu(x @ w^T + bias). x [N, in]
// with unit stride in one dim, w [out, in] (same rule), bias [out] contiguous, y contiguous [N, out]; one
// floating dtype. Optional per device: the linear op composes gemm, add and relu where a device registers
// none (the CPU does).
KOLO_DECLARE_KERNEL(linear_fwd, void(const Tensor& x, const Tensor& w, const Tensor& bias, bool relu, Tensor& y));
// Its gradients from gy [N, out] (any strides): gx = gy @ w [N, in] (with `accumulate_gx`: gx += gy @ w),
// gw = gy^T @ x [out, in] and gb = column sums of gy [out], each contiguous and written only when defined.
KOLO_DECLARE_KERNEL(linear_bwd, void(const Tensor& gy, const Tensor& x, const Tensor& w, Tensor& gx, Tensor& gw,
                                     Tensor& gb, bool accumulate_gx));

// A feed-forward block as one kernel pair: h = relu(x @ w1^T + b1), y = h @ w2^T + b2, with x [N, in], w1
// [hidden, in], w2 [out, hidden], biases contiguous, h [N, hidden] and y [N, out] contiguous; one floating
// dtype. The forward may set `relu_mask` to its own record of h > 0, which the backward then reads in place
// of h (undefined: the backward masks with h). Optional per device: feed_forward composes linear_relu and
// linear where a device registers none.
KOLO_DECLARE_KERNEL(ffn_fwd, void(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2,
                                  const Tensor& b2, Tensor& h, Tensor& relu_mask, Tensor& y));
// Its gradients from gy [N, out]: gx [N, in] (added to with `accumulate_gx`), gw1, gb1, gw2, gb2, each
// contiguous and written when defined.
KOLO_DECLARE_KERNEL(ffn_bwd, void(const Tensor& gy, const Tensor& x, const Tensor& w1, const Tensor& h,
                                  const Tensor& relu_mask, const Tensor& w2, Tensor& gx, Tensor& gw1, Tensor& gb1,
                                  Tensor& gw2, Tensor& gb2, bool accumulate_gx));

}  // namespace kolo
