// Launchers of the CUDA reductions: row reductions, middle-axis (column) reductions, argmax over the last
// axis and the all-finite check. Inputs are contiguous; accumulation is in f32 (f64 for f64 inputs).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/ops/kernels/elementwise.h"
#include "core/tensor/dtype.h"

namespace kolo::cuda {

// Bytes of device scratch the reductions below need for the given sizes (0 when they run in one pass).
size_t reduce_rows_scratch(int64_t rows, int64_t inner, DType dtype);
size_t reduce_mid_scratch(int64_t outer, int64_t r, int64_t inner, DType dtype);

// out[i] = reduce(x[i, :]) for x [rows, inner].
void launch_reduce_rows(ReduceOp op, const void* x, void* out, DType dtype, int64_t rows, int64_t inner,
                        void* scratch, cudaStream_t stream);
// out[o, i] = reduce over j of x[o, j, i] for x [outer, r, inner].
void launch_reduce_mid(ReduceOp op, const void* x, void* out, DType dtype, int64_t outer, int64_t r, int64_t inner,
                       void* scratch, cudaStream_t stream);
// out (i64) = index of the first maximum of each row of x [rows, n]; a NaN is the maximum (the first NaN wins).
void launch_argmax_last(const void* x, int64_t* out, DType dtype, int64_t rows, int64_t n, cudaStream_t stream);
// *flag (device int, zeroed by the caller) becomes nonzero if any element is Inf or NaN.
void launch_any_nonfinite(const void* x, DType dtype, int64_t n, int* flag, cudaStream_t stream);

}  // namespace kolo::cuda
