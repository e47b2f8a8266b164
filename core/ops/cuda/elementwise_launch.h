// Launchers of the CUDA elementwise kernels (unary and its backward, binary, affine, axpy) on raw buffers.
// Operands share `dtype`; layouts come as StridedIndexers with the output first.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/ops/cuda/strided_indexer.h"
#include "core/ops/kernels/elementwise.h"
#include "core/tensor/dtype.h"

namespace kolo::cuda {

void launch_unary(UnaryOp op, void* out, const void* x, DType dtype, const StridedIndexer<2>& ix, int64_t n,
                  cudaStream_t stream);
// Contiguous operands: out = grad * d op(x)/dx (given y = op(x)).
void launch_unary_backward(UnaryOp op, void* out, const void* grad, const void* x, const void* y, DType dtype,
                           int64_t n, cudaStream_t stream);
void launch_binary(BinaryOp op, void* out, const void* a, const void* b, DType dtype, const StridedIndexer<3>& ix,
                   int64_t n, cudaStream_t stream);
void launch_affine(void* out, const void* x, DType dtype, double scale, double shift, const StridedIndexer<2>& ix,
                   int64_t n, cudaStream_t stream);
// y += alpha * x; ix operands are (y, y, x).
void launch_axpy(void* y, const void* x, DType dtype, double alpha, const StridedIndexer<3>& ix, int64_t n,
                 cudaStream_t stream);

}  // namespace kolo::cuda
