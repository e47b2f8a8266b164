// Batched GEMM over attention heads whose matrices need not sit at one batch stride (a [B, T, H, Dh] tensor
// viewed as [B, H, T, Dh] puts head (b, h) at b * T*H*Dh + h * Dh): classic cuBLAS with device arrays of
// per-head pointers (filled by launch_head_pointers, attention_launch.h), tensor cores for bf16/f16 with
// f32 accumulation. Every pointer in the arrays must be 16-byte aligned: cuBLAS cannot inspect them.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/tensor/dtype.h"

namespace kolo::cuda {

// One operand: device array of `batch` per-head base pointers, each a row-major matrix with leading
// dimension ld (elements) and unit column stride.
struct HeadMatrix {
  void* const* ptrs;
  int64_t ld;
  DType dtype;
};

// c[i] = alpha * op(a[i]) @ op(b[i]) + beta * c[i] for i in [0, batch): c is m x n, the inner size k,
// op = transpose where the flag is set. a and b share a dtype (f32, bf16 or f16); c is that dtype or f32.
// f32 inputs run in true f32 unless KOLO_ALLOW_TF32=1 (as gemm_lt.h). Runs on `stream` of `device`.
void head_gemm(int device, cudaStream_t stream, int64_t batch, int64_t m, int64_t n, int64_t k,
               const HeadMatrix& a, bool trans_a, const HeadMatrix& b, bool trans_b, const HeadMatrix& c,
               double alpha, double beta);

}  // namespace kolo::cuda
