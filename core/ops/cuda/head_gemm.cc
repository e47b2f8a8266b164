// Pointer-array batched GEMM on classic cuBLAS (see head_gemm.h).
#include "core/ops/cuda/head_gemm.h"

#include <cublas_v2.h>

#include <array>
#include <limits>
#include <mutex>

#include "core/device/cuda/cuda_check.h"
#include "core/ops/cuda/cuda_tensor.h"
#include "core/ops/cuda/gemm_lt.h"

namespace kolo::cuda {

namespace {

// cuBLAS may use a workspace for split-k kernels; handing it one from the caching allocator keeps it from
// allocating its own inside a CUDA graph capture.
constexpr size_t kWorkspaceBytes = size_t{4} << 20;

// One handle per device; a handle is bound to a stream per call, so calls hold its mutex throughout.
struct Handle {
  std::mutex mu;
  cublasHandle_t h = nullptr;
};

Handle& handle_for(int device) {
  static std::array<Handle, 64>* handles = new std::array<Handle, 64>;  // leaked: used until process exit
  KOLO_CHECK(device >= 0 && device < 64, "cuBLAS: device index ", device);
  return (*handles)[static_cast<size_t>(device)];
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::F32: return CUDA_R_32F;
    case DType::BF16: return CUDA_R_16BF;
    case DType::F16: return CUDA_R_16F;
    default: KOLO_FAIL("head_gemm: dtype ", dtype_name(t), " is not f32, bf16 or f16");
  }
}

int as_int(int64_t v, const char* what) {
  KOLO_CHECK(v >= 0 && v <= std::numeric_limits<int>::max(), "head_gemm: ", what, " ", v, " does not fit cuBLAS");
  return static_cast<int>(v);
}

}  // namespace

void head_gemm(int device, cudaStream_t stream, int64_t batch, int64_t m, int64_t n, int64_t k,
               const HeadMatrix& a, bool trans_a, const HeadMatrix& b, bool trans_b, const HeadMatrix& c,
               double alpha, double beta) {
  KOLO_CHECK(a.dtype == b.dtype && (c.dtype == a.dtype || c.dtype == DType::F32), "head_gemm: dtypes ",
             dtype_name(a.dtype), " @ ", dtype_name(b.dtype), " -> ", dtype_name(c.dtype), " not supported");
  KOLO_CHECK(a.ld >= std::max<int64_t>(trans_a ? m : k, 1) && b.ld >= std::max<int64_t>(trans_b ? k : n, 1) &&
                 c.ld >= std::max<int64_t>(n, 1),
             "head_gemm: leading dimensions ", a.ld, ", ", b.ld, ", ", c.ld, " too small for m ", m, ", n ", n,
             ", k ", k);
  if (batch == 0 || m == 0 || n == 0) return;
  const cublasComputeType_t compute =
      a.dtype == DType::F32 && gemm_allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  const float alpha_f = static_cast<float>(alpha), beta_f = static_cast<float>(beta);
  DeviceScratch workspace(device, kWorkspaceBytes);
  Handle& handle = handle_for(device);
  std::lock_guard<std::mutex> lock(handle.mu);
  if (!handle.h) KOLO_CUBLAS_CHECK(cublasCreate(&handle.h));
  KOLO_CUBLAS_CHECK(cublasSetStream(handle.h, stream));
  KOLO_CUBLAS_CHECK(cublasSetWorkspace(handle.h, workspace.get(), kWorkspaceBytes));
  // Row-major C = op(A) op(B) is the column-major C^T = op(B)^T op(A)^T: b goes first, nothing is copied.
  KOLO_CUBLAS_CHECK(cublasGemmBatchedEx(
      handle.h, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, as_int(n, "n"),
      as_int(m, "m"), as_int(k, "k"), &alpha_f, const_cast<const void* const*>(b.ptrs), cuda_type(b.dtype),
      as_int(b.ld, "ld"), const_cast<const void* const*>(a.ptrs), cuda_type(a.dtype), as_int(a.ld, "ld"), &beta_f,
      c.ptrs, cuda_type(c.dtype), as_int(c.ld, "ld"), as_int(batch, "batch"), compute, CUBLAS_GEMM_DEFAULT));
}

}  // namespace kolo::cuda
