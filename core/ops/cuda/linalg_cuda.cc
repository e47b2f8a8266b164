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

void cuda_linear_bwd(const Tensor& gy, const Tensor& x, const Tensor& w, Tensor& gx, Tensor& gw, Tensor& gb,
                     bool accumulate_gx) {
  const Tensor gy3 = gy.unsqueeze(0);
  if (gx.defined()) {
    Tensor gx3 = gx.unsqueeze(0);
    cuda::gemm(gy3, w.unsqueeze(0), gx3, false, false, 1.0, accumulate_gx ? 1.0 : 0.0);
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

// fc1 keeps cuBLASLt's bit mask of h > 0 (1/16 of h's bf16 bytes), so that the backward's GEMM for h's
// gradient applies the ReLU's derivative and sums b1's gradient in its epilogue.
void cuda_ffn_fwd(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2, Tensor& h,
                  Tensor& relu_mask, Tensor& y) {
  Tensor h3 = h.unsqueeze(0), y3 = y.unsqueeze(0);
  relu_mask = Tensor::empty({cuda::relu_mask_bytes(h.size(0), h.size(1))}, DType::U8, h.device());
  if (!cuda::try_gemm(x.unsqueeze(0), w1.unsqueeze(0), h3, false, true, 1.0, 0.0, cuda::GemmEpilogue::ReluAuxBias, b1,
                      relu_mask)) {
    relu_mask = Tensor();
    cuda_linear_fwd(x, w1, b1, true, h);
  }
  cuda::gemm(h3, w2.unsqueeze(0), y3, false, true, 1.0, 0.0, cuda::GemmEpilogue::Bias, b2);
}

void cuda_ffn_bwd(const Tensor& gy, const Tensor& x, const Tensor& w1, const Tensor& h, const Tensor& relu_mask,
                  const Tensor& w2, Tensor& gx, Tensor& gw1, Tensor& gb1, Tensor& gw2, Tensor& gb2,
                  bool accumulate_gx) {
  Tensor none;
  cuda_linear_bwd(gy, h, w2, none, gw2, gb2, false);
  if (!gx.defined() && !gw1.defined() && !gb1.defined()) return;
  const Device dev = h.device();
  const Tensor gy3 = gy.unsqueeze(0), w23 = w2.unsqueeze(0);
  Tensor gh = Tensor::empty(h.shape(), h.dtype(), dev), gh3 = gh.unsqueeze(0);
  Tensor gb1_out = gb1.defined() ? gb1 : Tensor::empty({h.size(1)}, h.dtype(), dev);
  const bool fused = relu_mask.defined() && cuda::try_gemm(gy3, w23, gh3, false, false, 1.0, 0.0,
                                                           cuda::GemmEpilogue::DReluBiasGrad, gb1_out, relu_mask);
  if (!fused) {
    cuda::gemm(gy3, w23, gh3, false, false, 1.0, 0.0);
    unary_backward_kernel()(dev)(UnaryOp::Relu, gh, h, h, gh);
    if (gb1.defined()) bias_grad(gh, gb1);
  }
  cuda_linear_bwd(gh, x, w1, gx, gw1, none, accumulate_gx);
}

}  // namespace

KOLO_REGISTER_KERNEL(gemm, CUDA, cuda_gemm);
KOLO_REGISTER_KERNEL(linear_fwd, CUDA, cuda_linear_fwd);
KOLO_REGISTER_KERNEL(linear_bwd, CUDA, cuda_linear_bwd);
KOLO_REGISTER_KERNEL(ffn_fwd, CUDA, cuda_ffn_fwd);
KOLO_REGISTER_KERNEL(ffn_bwd, CUDA, cuda_ffn_bwd);

}  // namespace kolo
