// cuBLASLt GEMM with per-problem algorithm caching (see gemm_lt.h).
#include "core/ops/cuda/gemm_lt.h"

#include <cublasLt.h>

#include <array>
#include <mutex>
#include <string>
#include <unordered_map>

#include "core/device/cuda/cuda_check.h"
#include "core/ops/cuda/cuda_tensor.h"
#include "core/ops/cuda/elementwise_launch.h"
#include "core/util/env.h"

namespace kolo::cuda {

namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;

cublasLtHandle_t lt_handle(int device) {
  static std::mutex mu;
  static std::array<cublasLtHandle_t, 64> handles{};
  std::lock_guard<std::mutex> lock(mu);
  KOLO_CHECK(device >= 0 && device < 64, "cuBLASLt: device index ", device);
  if (!handles[device]) KOLO_CUBLAS_CHECK(cublasLtCreate(&handles[device]));
  return handles[device];
}

// Column-major view of a row-major stored [rows, cols] operand with strides (s_row, s_col) such that
// op(view) equals the transpose of the math operand (see gemm_lt.h).
struct ColView {
  uint64_t rows, cols;
  int64_t ld;
  cublasOperation_t op;
};

bool view_of(const Tensor& x, bool trans, ColView& v) {
  const int64_t r = x.size(1), c = x.size(2), s1 = x.strides()[1], s2 = x.strides()[2];
  if (s2 == 1 || c == 1) {
    v = {static_cast<uint64_t>(c), static_cast<uint64_t>(r), r <= 1 ? std::max<int64_t>(c, 1) : s1,
         trans ? CUBLAS_OP_T : CUBLAS_OP_N};
    if (v.ld >= std::max<int64_t>(c, 1)) return true;
  }
  if (s1 == 1 || r == 1) {
    v = {static_cast<uint64_t>(r), static_cast<uint64_t>(c), c <= 1 ? std::max<int64_t>(r, 1) : s2,
         trans ? CUBLAS_OP_N : CUBLAS_OP_T};
    if (v.ld >= std::max<int64_t>(r, 1)) return true;
  }
  return false;
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::F32: return CUDA_R_32F;
    case DType::F64: return CUDA_R_64F;
    case DType::BF16: return CUDA_R_16BF;
    case DType::F16: return CUDA_R_16F;
    default: KOLO_FAIL("gemm on CUDA needs a floating dtype, got ", dtype_name(t));
  }
}

template <typename T, typename Fn>
struct Owned {
  T h = nullptr;
  Fn destroy;
  ~Owned() {
    if (h) destroy(h);
  }
};

struct AlgoCache {
  std::mutex mu;
  std::unordered_map<std::string, std::pair<bool, cublasLtMatmulAlgo_t>> algos;  // false: none exists
};

AlgoCache& algo_cache() {
  static AlgoCache* cache = new AlgoCache;  // leaked: used until process exit
  return *cache;
}

}  // namespace

int64_t relu_mask_bytes(int64_t m, int64_t n) { return (n + 127) / 128 * 16 * m; }

bool gemm_allow_tf32() {
  static const bool on = env::get_bool("KOLO_ALLOW_TF32", false);
  return on;
}

namespace {

bool run_gemm(const Tensor& a_in, const Tensor& b_in, Tensor& c, bool trans_a, bool trans_b, double alpha,
              double beta, GemmEpilogue epilogue, const Tensor& bias, const Tensor& aux, bool required) {
  KernelContext ctx("gemm", {&a_in, &b_in, &c});
  KOLO_CHECK(a_in.dim() == 3 && b_in.dim() == 3 && c.dim() == 3 && c.is_contiguous(), "gemm: expected 3-D a, b and ",
             "contiguous 3-D c, got ", a_in.describe(), ", ", b_in.describe(), ", ", c.describe());
  KOLO_CHECK(a_in.dtype() == c.dtype() && b_in.dtype() == c.dtype(), "gemm: dtypes differ: ", a_in.describe(), ", ",
             b_in.describe(), ", ", c.describe());
  const int64_t batch = c.size(0), m = c.size(1), n = c.size(2);
  const int64_t k = trans_a ? a_in.size(1) : a_in.size(2);
  KOLO_CHECK((trans_a ? a_in.size(2) : a_in.size(1)) == m && (trans_b ? b_in.size(2) : b_in.size(1)) == k &&
                 (trans_b ? b_in.size(1) : b_in.size(2)) == n && (a_in.size(0) == batch || a_in.size(0) == 1) &&
                 (b_in.size(0) == batch || b_in.size(0) == 1),
             "gemm: shapes ", a_in.describe(), (trans_a ? "^T" : ""), " @ ", b_in.describe(), (trans_b ? "^T" : ""),
             " -> ", c.describe(), " do not match");
  const bool has_bias = epilogue != GemmEpilogue::None;
  const bool bias_grad = epilogue == GemmEpilogue::BiasGradA || epilogue == GemmEpilogue::DReluBiasGrad;
  const bool has_aux = epilogue == GemmEpilogue::ReluAuxBias || epilogue == GemmEpilogue::DReluBiasGrad;
  if (has_bias) {
    const int64_t len = epilogue == GemmEpilogue::BiasGradA ? m : n;
    KOLO_CHECK(bias.defined() && bias.is_contiguous() && bias.numel() == len && bias.dtype() == c.dtype() &&
                   bias.device() == c.device(),
               "gemm: epilogue needs a contiguous bias of ", len, " elements in ", dtype_name(c.dtype()), " on ",
               c.device().str(), ", got ", bias.defined() ? bias.describe() : std::string("none"));
    KOLO_CHECK(beta == 0.0, "gemm: bias epilogues need beta == 0");
    KOLO_CHECK(!bias_grad || batch == 1, "gemm: the bias-gradient epilogue takes one matrix, got ", c.describe());
  }
  if (has_aux)
    KOLO_CHECK(batch == 1 && aux.defined() && aux.is_contiguous() && aux.dtype() == DType::U8 &&
                   aux.numel() == relu_mask_bytes(m, n) && aux.device() == c.device(),
               "gemm: the ReLU-mask epilogues take one matrix and a contiguous u8 mask of ", relu_mask_bytes(m, n),
               " bytes on ", c.device().str(), ", got ", c.describe(), " and ",
               aux.defined() ? aux.describe() : std::string("none"));
  // Empty problems: bias gradients and masks fall back to the caller, which computes (or zero-fills) them itself.
  if ((bias_grad || has_aux) && (c.numel() == 0 || k == 0)) return false;
  if (c.numel() == 0) return true;
  if (k == 0) {  // empty product: c = beta * c, the bias epilogues left to the caller's separate pass
    if (has_bias) {  // try_gemm callers compose the op; a required epilogue over nothing is refused
      KOLO_CHECK(!required, "gemm: a bias epilogue over an empty product (k = 0, ", a_in.describe(), " @ ",
                 b_in.describe(), ") is not supported");
      return false;
    }
    if (beta == 0.0)  // c may hold anything (a recycled block: NaN * 0 is NaN)
      KOLO_CUDA_CHECK(cudaMemsetAsync(c.data_ptr(), 0, c.nbytes(), ctx.stream()));
    else
      launch_affine(c.data_ptr(), c.data_ptr(), c.dtype(), beta, 0.0, indexer_of<2>(c.shape(), {&c, &c}), c.numel(),
                    ctx.stream());
    return true;
  }
  ColView va{}, vb{};
  Tensor a = a_in, b = b_in;
  if (!view_of(a, trans_a, va)) {
    a = a_in.contiguous();
    view_of(a, trans_a, va);
  }
  if (!view_of(b, trans_b, vb)) {
    b = b_in.contiguous();
    view_of(b, trans_b, vb);
  }
  const int64_t sa = a.size(0) == 1 ? 0 : a.strides()[0];
  const int64_t sb = b.size(0) == 1 ? 0 : b.strides()[0];

  const DType dt = c.dtype();
  const cudaDataType_t type = cuda_type(dt);
  const bool f64 = dt == DType::F64;
  const cublasComputeType_t compute =
      f64 ? CUBLAS_COMPUTE_64F : (dt == DType::F32 && gemm_allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F);
  const cudaDataType_t scale_type = f64 ? CUDA_R_64F : CUDA_R_32F;

  Owned<cublasLtMatmulDesc_t, decltype(&cublasLtMatmulDescDestroy)> op{nullptr, &cublasLtMatmulDescDestroy};
  KOLO_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op.h, compute, scale_type));
  // cuBLASLt's A is b's view and its B is a's view (C^T = B^T A^T).
  KOLO_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op.h, CUBLASLT_MATMUL_DESC_TRANSA, &vb.op, sizeof(vb.op)));
  KOLO_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op.h, CUBLASLT_MATMUL_DESC_TRANSB, &va.op, sizeof(va.op)));
  // cuBLASLt epilogues have faulted on a bias vector off 16 bytes ("misaligned address"): such a bias (a
  // parameter packed after an odd-sized one in a flat buffer) goes through an aligned copy, and a bias gradient
  // is written to an aligned buffer and copied back after the product.
  Tensor epilogue_bias = bias;
  const bool stage_bias = has_bias && reinterpret_cast<uintptr_t>(bias.data_ptr()) % 16 != 0;
  if (stage_bias)
    epilogue_bias = bias_grad ? Tensor::empty(bias.shape(), bias.dtype(), bias.device()) : bias.detach().clone();
  if (has_bias) {
    // kolo's a is cuBLASLt's B (see gemm_lt.h), so a bias gradient over a is BGRADB.
    const cublasLtEpilogue_t ep = epilogue == GemmEpilogue::Bias          ? CUBLASLT_EPILOGUE_BIAS
                                  : epilogue == GemmEpilogue::ReluBias    ? CUBLASLT_EPILOGUE_RELU_BIAS
                                  : epilogue == GemmEpilogue::GeluBias    ? CUBLASLT_EPILOGUE_GELU_BIAS
                                  : epilogue == GemmEpilogue::ReluAuxBias ? CUBLASLT_EPILOGUE_RELU_AUX_BIAS
                                  : epilogue == GemmEpilogue::DReluBiasGrad ? CUBLASLT_EPILOGUE_DRELU_BGRAD
                                                                          : CUBLASLT_EPILOGUE_BGRADB;
    KOLO_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op.h, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof(ep)));
    const void* bias_ptr = epilogue_bias.data_ptr();
    KOLO_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(op.h, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr, sizeof(bias_ptr)));
  }
  if (has_aux) {
    // The mask is laid out like cuBLASLt's column-major C^T: n rows (in bits, padded to 128), m columns.
    const void* aux_ptr = aux.data_ptr();
    const int64_t aux_ld = (n + 127) / 128 * 128;
    KOLO_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(op.h, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux_ptr, sizeof(aux_ptr)));
    KOLO_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(op.h, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld, sizeof(aux_ld)));
  }

  using Layout = Owned<cublasLtMatrixLayout_t, decltype(&cublasLtMatrixLayoutDestroy)>;
  Layout la{nullptr, &cublasLtMatrixLayoutDestroy}, lb{nullptr, &cublasLtMatrixLayoutDestroy},
      lc{nullptr, &cublasLtMatrixLayoutDestroy};
  KOLO_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la.h, type, vb.rows, vb.cols, vb.ld));
  KOLO_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb.h, type, va.rows, va.cols, va.ld));
  KOLO_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lc.h, type, static_cast<uint64_t>(n), static_cast<uint64_t>(m), n));
  const int32_t count = static_cast<int32_t>(batch);
  const int64_t sc = m * n;
  for (auto [layout, stride] : {std::pair{la.h, sb}, std::pair{lb.h, sa}, std::pair{lc.h, sc}}) {
    KOLO_CUBLAS_CHECK(
        cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
    KOLO_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                                       sizeof(stride)));
  }

  cublasLtHandle_t handle = lt_handle(ctx.device());
  const std::string key = detail::concat(ctx.device(), '|', static_cast<int>(dt), '|', static_cast<int>(compute), '|',
                                         batch, ',', m, ',', n, ',', k, '|', va.op, va.ld, ',', vb.op, vb.ld, '|', sa,
                                         ',', sb, '|', static_cast<int>(epilogue), '|',
                                         reinterpret_cast<uintptr_t>(a.data_ptr()) % 16, ',',
                                         reinterpret_cast<uintptr_t>(b.data_ptr()) % 16, ',',
                                         reinterpret_cast<uintptr_t>(c.data_ptr()) % 16, ',',
                                         has_bias ? reinterpret_cast<uintptr_t>(epilogue_bias.data_ptr()) % 16 : 0, ',',
                                         has_aux ? reinterpret_cast<uintptr_t>(aux.data_ptr()) % 16 : 0);
  cublasLtMatmulAlgo_t algo;
  {
    AlgoCache& cache = algo_cache();
    std::lock_guard<std::mutex> lock(cache.mu);
    auto it = cache.algos.find(key);
    if (it != cache.algos.end()) {
      if (!it->second.first) {
        KOLO_CHECK(!required, "gemm: cuBLASLt has no algorithm for ", a_in.describe(), " @ ", b_in.describe(),
                   " -> ", c.describe());
        return false;
      }
      algo = it->second.second;
    } else {
      Owned<cublasLtMatmulPreference_t, decltype(&cublasLtMatmulPreferenceDestroy)> pref{
          nullptr, &cublasLtMatmulPreferenceDestroy};
      KOLO_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref.h));
      const uint64_t ws = kWorkspaceBytes;
      KOLO_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.h, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                             sizeof(ws)));
      // The operands' real alignment (the heuristic assumes 256 bytes otherwise and may pick a kernel that
      // rejects or faults on a view, or on a parameter packed after an odd-sized one in a flat buffer). cuBLASLt's
      // A is b and its B is a (row-major operands swapped into column-major).
      auto alignment = [](const void* p) {
        uint32_t bytes = 16;
        while (bytes > 1 && reinterpret_cast<uintptr_t>(p) % bytes != 0) bytes /= 2;
        return bytes;
      };
      const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> aligned[] = {
          {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, alignment(b.data_ptr())},
          {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alignment(a.data_ptr())},
          {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, alignment(c.data_ptr())},
          {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, alignment(c.data_ptr())}};
      for (const auto& [attribute, bytes] : aligned)
        KOLO_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.h, attribute, &bytes, sizeof(bytes)));
      cublasLtMatmulHeuristicResult_t result{};
      int found = 0;
      const cublasStatus_t st =
          cublasLtMatmulAlgoGetHeuristic(handle, op.h, la.h, lb.h, lc.h, lc.h, pref.h, 1, &result, &found);
      // An optional epilogue the heuristic rejects in any way (not supported, or an attribute combination it
      // calls invalid) falls back to the caller's separate pass; a plain GEMM must succeed.
      if (required) KOLO_CUBLAS_CHECK(st);
      if (st != CUBLAS_STATUS_SUCCESS) found = 0;
      cache.algos.emplace(key, std::make_pair(found > 0, result.algo));
      KOLO_CHECK(found > 0 || !required, "gemm: cuBLASLt has no algorithm for ", a_in.describe(), " @ ",
                 b_in.describe(), " -> ", c.describe());
      if (found == 0) return false;
      algo = result.algo;
    }
  }

  DeviceScratch workspace(ctx.device(), kWorkspaceBytes);
  const float alpha_f = static_cast<float>(alpha), beta_f = static_cast<float>(beta);
  const void* alpha_p = f64 ? static_cast<const void*>(&alpha) : &alpha_f;
  const void* beta_p = f64 ? static_cast<const void*>(&beta) : &beta_f;
  KOLO_CUBLAS_CHECK(cublasLtMatmul(handle, op.h, alpha_p, b.data_ptr(), la.h, a.data_ptr(), lb.h, beta_p,
                                   c.data_ptr(), lc.h, c.data_ptr(), lc.h, &algo, workspace.get(), kWorkspaceBytes,
                                   ctx.stream()));
  if (stage_bias && bias_grad) {
    Tensor out = bias;  // a handle on the caller's gradient buffer
    out.copy_(epilogue_bias);
  }
  return true;
}

}  // namespace

void gemm(const Tensor& a, const Tensor& b, Tensor& c, bool trans_a, bool trans_b, double alpha, double beta,
          GemmEpilogue epilogue, const Tensor& bias, const Tensor& aux) {
  run_gemm(a, b, c, trans_a, trans_b, alpha, beta, epilogue, bias, aux, true);
}

bool try_gemm(const Tensor& a, const Tensor& b, Tensor& c, bool trans_a, bool trans_b, double alpha, double beta,
              GemmEpilogue epilogue, const Tensor& bias, const Tensor& aux) {
  return run_gemm(a, b, c, trans_a, trans_b, alpha, beta, epilogue, bias, aux, false);
}

}  // namespace kolo::cuda
