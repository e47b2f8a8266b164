// Registers the CUDA implementations of the linalg kernel slots (core/ops/kernels/linalg.h) on cuBLASLt: gemm,
// and linear layers with the bias (and a following ReLU) applied by the GEMM epilogue and the bias gradient
// reduced by the weight-gradient GEMM (BGRAD epilogue), so none needs a pass of its own over the activations.
#include "core/ops/cuda/gemm_lt.h"
#include "core/ops/kernels/elementwise.h"
#include "core/ops/kernels/linalg.h"

namespace kolo {

namespace {

void cuda_gemm(const Tensor& a, const Tensor& b, Tensor& c, bool trans_a, bool trans_b, double alpha, double beta) {
  cuda::gemm(a, b, c, trans_a, trans_b, alpha, beta);
}

void cuda_linear_fwd(const Tensor& x, const Tensor& w, const Tensor& bias, bool relu, Tensor& y) {
  Tensor y3 = y.unsqueeze(0);
  const Tensor x3 = x.unsqueeze(0), w3 = w.unsqueeze(0);
  if (relu && cuda::try_gemm(x3, w3, y3, false, true, 1.0, 0.0, cuda::GemmEpilogue::ReluBias, bias)) return;
  cuda::gemm(x3, w3, y3, false, true, 1.0, 0.0, cuda::GemmEpilogue::Bias, bias);
  if (relu) unary_kernel()(y.device())(UnaryOp::Relu, y, y);
}

// gb = column sums of gy, for where the epilogue is not available.
void bias_grad(const Tensor& gy, Tensor& gb) {
  const Tensor g = gy.contiguous();
  reduce_mid_kernel()(g.device())(ReduceOp::Sum, g, 1, g.size(0), g.size(1), gb);
}

void cuda_linear_bwd(const Tensor& gy, const Tensor& x, const Tensor& w, Tensor& gx, Tensor& gw, Tensor& gb) {
  const Tensor gy3 = gy.unsqueeze(0);
  if (gx.defined()) {
    Tensor gx3 = gx.unsqueeze(0);
    cuda::gemm(gy3, w.unsqueeze(0), gx3, false, false, 1.0, 0.0);
  }
  if (gw.defined()) {
    Tensor gw3 = gw.unsqueeze(0);
    const bool fused = gb.defined() && cuda::try_gemm(gy3, x.unsqueeze(0), gw3, true, false, 1.0, 0.0,
                                                     cuda::GemmEpilogue::BiasGradA, gb);
    if (!fused) {
      cuda::gemm(gy3, x.unsqueeze(0), gw3, true, false, 1.0, 0.0);
      if (gb.defined()) bias_grad(gy, gb);
    }
  } else if (gb.defined()) {
    bias_grad(gy, gb);
  }
}

}  // namespace

KOLO_REGISTER_KERNEL(gemm, CUDA, cuda_gemm);
KOLO_REGISTER_KERNEL(linear_fwd, CUDA, cuda_linear_fwd);
KOLO_REGISTER_KERNEL(linear_bwd, CUDA, cuda_linear_bwd);

}  // namespace kolo
