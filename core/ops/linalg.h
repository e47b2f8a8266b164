// Differentiable matrix products: matmul with batch broadcasting, and linear layers.
#pragma once

#include "core/tensor/tensor.h"

namespace kolo {

// a [..., M, K] @ b [..., K, N] -> [..., M, N]; batch dims broadcast; 1-D operands are not accepted.
Tensor matmul(const Tensor& a, const Tensor& b);
// y = x @ w^T + bias with w [out, in] (PyTorch's layout); x [..., in]; bias optional.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias = Tensor());
// relu(linear(x, w, bias)); where the device fuses linear layers, the ReLU is applied by the GEMM's epilogue
// and the backward reads only the output (no pass over the pre-activation in either direction).
Tensor linear_relu(const Tensor& x, const Tensor& w, const Tensor& bias = Tensor());
// linear(linear_relu(x, w1, b1), w2, b2), a Transformer feed-forward block without activation dropout. Where
// the device fuses it, the backward applies the ReLU's mask in the epilogue of the GEMM that makes the hidden
// gradient, with b1's gradient (no pass of its own over the hidden activations).
Tensor feed_forward(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2);

}  // namespace kolo
