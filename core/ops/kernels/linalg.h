// Matrix-multiply kernel: batched GEMM on 3-D operands.
#pragma once

#include "core/ops/dispatch.h"
#include "core/tensor/tensor.h"

namespace kolo {

// c[b] = alpha * op(a[b]) @ op(b[b]) + beta * c[b]; a, b are 3-D with a batch stride of 0 allowed
// (broadcast), unit stride in one of their last two dims; c is contiguous [B, M, N]. op = transpose when
// the flag is set. All three share a floating dtype.
KOLO_DECLARE_KERNEL(gemm, void(const Tensor& a, const Tensor& b, Tensor& c, bool trans_a, bool trans_b,
                               double alpha, double beta));

}  // namespace kolo
