// oneDNN batched matmul behind the CPU gemm kernel (core/ops/kernels/linalg.h) for f32 and bf16.
// Returns false for other dtypes (f64, f16), which stay on Eigen. Only built with KOLO_WITH_DNNL.
#pragma once

#include "core/tensor/tensor.h"

namespace kolo::cpu {

bool dnnl_gemm(const Tensor& a, const Tensor& b, Tensor& c, bool trans_a, bool trans_b, double alpha, double beta);

}  // namespace kolo::cpu
