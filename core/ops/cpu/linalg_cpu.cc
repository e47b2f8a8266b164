// CPU GEMM: oneDNN matmul for f32 and bf16 when built with it; Eigen (OpenMP-threaded) for f64, for f16
// and as the whole implementation without oneDNN, half types then computing in f32.
#include <Eigen/Core>

#include "core/ops/kernels/linalg.h"
#ifdef KOLO_WITH_DNNL
#include "core/ops/cpu/dnnl_matmul.h"
#endif

namespace kolo {
namespace {

template <typename T>
void eigen_gemm(const Tensor& a, const Tensor& b, Tensor& c, bool ta, bool tb, double alpha, double beta) {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Stride = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
  const int64_t batch = c.size(0), m = c.size(1), n = c.size(2);
  const T* pa = static_cast<const T*>(a.data_ptr());
  const T* pb = static_cast<const T*>(b.data_ptr());
  T* pc = static_cast<T*>(c.data_ptr());
  // Each operand is given as stored (row-major with its own leading dimension); map then transpose.
  const int64_t ar = a.size(1), ac = a.size(2), br = b.size(1), bc = b.size(2);
  for (int64_t i = 0; i < batch; ++i) {
    Eigen::Map<const Mat, 0, Stride> A(pa + i * a.strides()[0], ar, ac, Stride(a.strides()[1], a.strides()[2]));
    Eigen::Map<const Mat, 0, Stride> B(pb + i * b.strides()[0], br, bc, Stride(b.strides()[1], b.strides()[2]));
    Eigen::Map<Mat> C(pc + i * m * n, m, n);
    const T al = static_cast<T>(alpha);
    if (beta == 0.0) {
      if (!ta && !tb) C.noalias() = al * (A * B);
      else if (ta && !tb) C.noalias() = al * (A.transpose() * B);
      else if (!ta && tb) C.noalias() = al * (A * B.transpose());
      else C.noalias() = al * (A.transpose() * B.transpose());
    } else {
      C *= static_cast<T>(beta);
      if (!ta && !tb) C.noalias() += al * (A * B);
      else if (ta && !tb) C.noalias() += al * (A.transpose() * B);
      else if (!ta && tb) C.noalias() += al * (A * B.transpose());
      else C.noalias() += al * (A.transpose() * B.transpose());
    }
  }
}

void cpu_gemm(const Tensor& a, const Tensor& b, Tensor& c, bool ta, bool tb, double alpha, double beta) {
#ifdef KOLO_WITH_DNNL
  if (cpu::dnnl_gemm(a, b, c, ta, tb, alpha, beta)) return;
#endif
  switch (c.dtype()) {
    case DType::F32: eigen_gemm<float>(a, b, c, ta, tb, alpha, beta); return;
    case DType::F64: eigen_gemm<double>(a, b, c, ta, tb, alpha, beta); return;
    default: break;
  }
  // Half types: compute in f32 and round once.
  Tensor af = a.to(DType::F32), bf = b.to(DType::F32);
  Tensor cf = c.to(DType::F32).contiguous();
  eigen_gemm<float>(af, bf, cf, ta, tb, alpha, beta);
  c.copy_(cf);
}

}  // namespace

KOLO_REGISTER_KERNEL(gemm, CPU, cpu_gemm);

}  // namespace kolo
