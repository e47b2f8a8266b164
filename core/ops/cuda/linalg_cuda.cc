// Registers the CUDA implementation of the gemm kernel slot (core/ops/kernels/linalg.h) on cuBLASLt.
#include "core/ops/cuda/gemm_lt.h"
#include "core/ops/kernels/linalg.h"

namespace kolo {
namespace {

void cuda_gemm(const Tensor& a, const Tensor& b, Tensor& c, bool trans_a, bool trans_b, double alpha, double beta) {
  cuda::gemm(a, b, c, trans_a, trans_b, alpha, beta);
}

}  // namespace

KOLO_REGISTER_KERNEL(gemm, CUDA, cuda_gemm);

}  // namespace kolo
