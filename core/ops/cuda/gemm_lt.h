// GEMM on CUDA through cuBLASLt: batched, any operand layout with a unit stride in one of its two matrix
// dims (broadcast batch stride 0 allowed), and fused epilogues for linear layers.
//
// Row-major C = op(A) op(B) is computed as the column-major C^T = op(B)^T op(A)^T, so no operand is ever
// copied or transposed. f32 runs in true f32 unless KOLO_ALLOW_TF32=1; bf16/f16 accumulate in f32; f64 in
// f64. The algorithm for each distinct problem (shapes, layouts, dtype, epilogue) is chosen once by the
// cuBLASLt heuristic and cached.
#pragma once

#include <cstdint>

#include "core/tensor/tensor.h"

namespace kolo::cuda {

enum class GemmEpilogue : uint8_t {
  None,
  Bias,      // c = a@b + bias[n]
  ReluBias,  // c = relu(a@b + bias[n])
  GeluBias,  // c = gelu_tanh(a@b + bias[n]) (cuBLASLt's GELU is the tanh approximation)
  // c = a@b and bias[m] = sum_k op(a)[m, k]: the bias gradient of a linear layer from gw = gy^T @ x
  // (a = gy with trans_a). `bias` is written; [M] contiguous in c's dtype; batch must be 1.
  BiasGradA,
  // c = relu(a@b + bias[n]), and `aux` gets the ReLU's bit mask (relu_mask_bytes(m, n) bytes, u8).
  ReluAuxBias,
  // c = (a@b) * mask and bias[n] = sum_m of that: the gradient through a ReluAuxBias layer's ReLU, from its
  // `aux` mask, with that layer's bias gradient. `bias` is written; batch must be 1.
  DReluBiasGrad,
};

// Bytes of the ReLU mask of a [m, n] ReluAuxBias output (cuBLASLt's bit layout: n rounded up to 128 bits).
int64_t relu_mask_bytes(int64_t m, int64_t n);

// c[i] = alpha * op(a[i]) @ op(b[i]) + beta * c[i] (then the epilogue). a, b 3-D, c contiguous [B, M, N],
// one floating dtype; bias [N] contiguous in c's dtype for the *Bias epilogues (beta must be 0 then); aux the
// ReLU mask of the *Aux* / DRelu* epilogues.
void gemm(const Tensor& a, const Tensor& b, Tensor& c, bool trans_a, bool trans_b, double alpha, double beta,
          GemmEpilogue epilogue = GemmEpilogue::None, const Tensor& bias = Tensor(), const Tensor& aux = Tensor());

// As gemm, but returns false (computing nothing) where cuBLASLt has no algorithm for the problem with this
// epilogue, so the caller can run the epilogue separately. The answer is cached per problem.
bool try_gemm(const Tensor& a, const Tensor& b, Tensor& c, bool trans_a, bool trans_b, double alpha, double beta,
              GemmEpilogue epilogue, const Tensor& bias, const Tensor& aux = Tensor());

// Whether f32 GEMMs may use TF32 tensor cores (KOLO_ALLOW_TF32=1; read once).
bool gemm_allow_tf32();

}  // namespace kolo::cuda
