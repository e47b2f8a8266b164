// Row kernels of the GEMM attention path (see attention_launch.h): masked softmax with dropout over f32
// score rows, its backward, and the per-head pointer arrays the batched GEMMs read. A warp owns one score
// row and keeps it in registers (lane holds columns lane, lane + 32, ...), so each row is read once.
#include <cmath>

#include "core/device/cuda/cuda_check.h"
#include "core/ops/cuda/attention_launch.h"
#include "core/ops/cuda/random.cuh"
#include "core/ops/cuda/row_reduce.cuh"

namespace kolo::cuda {

namespace {

constexpr int kWarpsPerBlock = 4;

struct RowParams {
  AttnShape s;
  int64_t bh0, nbh, ld_s, ld_p;
  AttnOperand mask;
  float dropout_p, keep_scale;  // keep_scale = 1 / (1 - p), 0 when p == 1
  uint64_t seed, base;
};

// The row this warp owns: chunk-local r, global g, and the element offset of its mask row.
struct RowRef {
  int64_t r, g, mask_off;
};

__device__ __forceinline__ bool row_of(const RowParams& pr, RowRef& ref) {
  ref.r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (ref.r >= pr.nbh * pr.s.tq) return false;
  ref.g = pr.bh0 * pr.s.tq + ref.r;
  const int64_t bh = ref.g / pr.s.tq, i = ref.g % pr.s.tq;
  ref.mask_off = (bh / pr.s.h) * pr.mask.stride[0] + (bh % pr.s.h) * pr.mask.stride[1] + i * pr.mask.stride[2];
  return true;
}

// Dropout factor of column j of global row g.
__device__ __forceinline__ float keep_factor(const RowParams& pr, int64_t g, int64_t j) {
  return dropout_factor(pr.seed, pr.base + static_cast<uint64_t>(g * pr.s.tk + j), pr.dropout_p, pr.keep_scale);
}

template <typename T>
__device__ __forceinline__ float mask_at(const RowParams& pr, const RowRef& ref, int64_t j) {
  if (!pr.mask.data) return 0.0f;
  return convert<float>(static_cast<const T*>(pr.mask.data)[ref.mask_off + j * pr.mask.stride[3]]);
}

template <typename T, int VPT>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    softmax_fwd_kernel(RowParams pr, const float* __restrict__ scores, T* __restrict__ p_drop, float* lse) {
  RowRef ref;
  if (!row_of(pr, ref)) return;
  const int lane = threadIdx.x % 32;
  const float* srow = scores + ref.r * pr.ld_s;
  float x[VPT];
  float mx = -INFINITY;
#pragma unroll
  for (int t = 0; t < VPT; ++t) {
    const int64_t j = t * 32 + lane;
    x[t] = j < pr.s.tk ? srow[j] + mask_at<T>(pr, ref, j) : -INFINITY;
    mx = fmaxf(mx, x[t]);
  }
  mx = warp_max(mx);
  float sum = 0.0f;
#pragma unroll
  for (int t = 0; t < VPT; ++t) {
    x[t] = x[t] == -INFINITY ? 0.0f : expf(x[t] - mx);
    sum += x[t];
  }
  sum = warp_sum(sum);
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  if (lane == 0) lse[ref.g] = sum > 0.0f ? mx + logf(sum) : -INFINITY;
  T* prow = p_drop + ref.r * pr.ld_p;
#pragma unroll
  for (int t = 0; t < VPT; ++t) {
    const int64_t j = t * 32 + lane;
    if (j < pr.s.tk) prow[j] = convert<T>(x[t] * inv * keep_factor(pr, ref.g, j));
  }
}

template <typename T, int VPT>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    softmax_bwd_kernel(RowParams pr, const float* __restrict__ scores, const float* __restrict__ dp,
                       const float* __restrict__ lse, T* __restrict__ p_drop, T* __restrict__ ds,
                       T* __restrict__ grad_scores) {
  RowRef ref;
  if (!row_of(pr, ref)) return;
  const int lane = threadIdx.x % 32;
  const float* srow = scores + ref.r * pr.ld_s;
  const float* dprow = dp + ref.r * pr.ld_s;
  const float l = lse[ref.g];
  float p[VPT], f[VPT], dpe[VPT];
  float delta = 0.0f;
#pragma unroll
  for (int t = 0; t < VPT; ++t) {
    const int64_t j = t * 32 + lane;
    p[t] = 0.0f;
    f[t] = 0.0f;
    dpe[t] = 0.0f;
    if (j < pr.s.tk && l != -INFINITY) {
      const float x = srow[j] + mask_at<T>(pr, ref, j);
      p[t] = x == -INFINITY ? 0.0f : expf(x - l);
      f[t] = keep_factor(pr, ref.g, j);
      dpe[t] = dprow[j] * f[t];
      delta += p[t] * dpe[t];
    }
  }
  // delta = rowsum(P .* dropout(dP)) = rowsum(dO .* O) of the forward, without reading O.
  delta = warp_sum(delta);
  T* prow = p_drop + ref.r * pr.ld_p;
  T* dsrow = ds + ref.r * pr.ld_p;
  T* gsrow = grad_scores ? grad_scores + ref.g * pr.s.tk : nullptr;
#pragma unroll
  for (int t = 0; t < VPT; ++t) {
    const int64_t j = t * 32 + lane;
    if (j < pr.s.tk) {
      const T d = convert<T>(p[t] * (dpe[t] - delta));
      prow[j] = convert<T>(p[t] * f[t]);
      dsrow[j] = d;
      if (gsrow) gsrow[j] = d;
    }
  }
}

struct HeadPtrSpecs {
  HeadPtrSpec op[kHeadPtrOperands];
};

__global__ void head_pointers_kernel(HeadPtrSpecs specs, int64_t total, int64_t n, void** ptrs) {
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const HeadPtrSpec& sp = specs.op[e / n];
    const int64_t g = sp.first + e % n;
    ptrs[e] = const_cast<char*>(sp.base + (g / sp.h) * sp.sb + (g % sp.h) * sp.sh);
  }
}

// Calls fn(integral_constant<VPT>) for the fewest values per lane that cover tk columns.
template <typename Fn>
void by_row_length(int64_t tk, Fn&& fn) {
  KOLO_CHECK(tk >= 1 && tk <= kAttentionGemmMaxKeys, "scaled_dot_product_attention on CUDA: ", tk,
             " keys outside the GEMM path's [1, ", kAttentionGemmMaxKeys, "]");
  if (tk <= 32) fn(std::integral_constant<int, 1>{});
  else if (tk <= 64) fn(std::integral_constant<int, 2>{});
  else if (tk <= 128) fn(std::integral_constant<int, 4>{});
  else if (tk <= 256) fn(std::integral_constant<int, 8>{});
  else if (tk <= 512) fn(std::integral_constant<int, 16>{});
  else fn(std::integral_constant<int, 32>{});
}

RowParams row_params(const AttnShape& s, int64_t bh0, int64_t nbh, int64_t ld_s, int64_t ld_p,
                     const AttnOperand& mask, double dropout_p, uint64_t seed, uint64_t base) {
  const float keep_scale = dropout_p < 1.0 ? static_cast<float>(1.0 / (1.0 - dropout_p)) : 0.0f;
  return {s, bh0, nbh, ld_s, ld_p, mask, static_cast<float>(dropout_p), keep_scale, seed, base};
}

unsigned row_blocks(const AttnShape& s, int64_t nbh) {
  const int64_t blocks = (nbh * s.tq + kWarpsPerBlock - 1) / kWarpsPerBlock;
  KOLO_CHECK(blocks < (int64_t{1} << 31), "scaled_dot_product_attention on CUDA: ", blocks, " blocks is too many");
  return static_cast<unsigned>(blocks);
}

}  // namespace

void launch_attention_softmax_fwd(DType t, const AttnShape& s, int64_t bh0, int64_t nbh, const float* scores,
                                  int64_t ld_s, const AttnOperand& mask, double dropout_p, uint64_t seed,
                                  uint64_t base, void* p_drop, int64_t ld_p, float* lse, cudaStream_t stream) {
  if (nbh * s.tq == 0) return;
  const RowParams pr = row_params(s, bh0, nbh, ld_s, ld_p, mask, dropout_p, seed, base);
  dispatch_float_dtype(t, "scaled_dot_product_attention", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, double>) {
      KOLO_FAIL("scaled_dot_product_attention: the GEMM path does not take f64");
    } else {
      by_row_length(s.tk, [&](auto vpt) {
        softmax_fwd_kernel<T, decltype(vpt)::value><<<row_blocks(s, nbh), kWarpsPerBlock * 32, 0, stream>>>(
            pr, scores, static_cast<T*>(p_drop), lse);
        KOLO_CUDA_CHECK_LAUNCH();
      });
    }
  });
}

void launch_attention_softmax_bwd(DType t, const AttnShape& s, int64_t bh0, int64_t nbh, const float* scores,
                                  const float* dp, int64_t ld_s, const AttnOperand& mask, const float* lse,
                                  double dropout_p, uint64_t seed, uint64_t base, void* p_drop, void* ds,
                                  int64_t ld_p, void* grad_scores, cudaStream_t stream) {
  if (nbh * s.tq == 0) return;
  const RowParams pr = row_params(s, bh0, nbh, ld_s, ld_p, mask, dropout_p, seed, base);
  dispatch_float_dtype(t, "scaled_dot_product_attention backward", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, double>) {
      KOLO_FAIL("scaled_dot_product_attention backward: the GEMM path does not take f64");
    } else {
      by_row_length(s.tk, [&](auto vpt) {
        softmax_bwd_kernel<T, decltype(vpt)::value><<<row_blocks(s, nbh), kWarpsPerBlock * 32, 0, stream>>>(
            pr, scores, dp, lse, static_cast<T*>(p_drop), static_cast<T*>(ds), static_cast<T*>(grad_scores));
        KOLO_CUDA_CHECK_LAUNCH();
      });
    }
  });
}

void launch_head_pointers(const HeadPtrSpec* specs, int count, int64_t n, void** ptrs, cudaStream_t stream) {
  KOLO_CHECK(count >= 1 && count <= kHeadPtrOperands, "launch_head_pointers: ", count, " operands");
  if (n == 0) return;
  HeadPtrSpecs all{};
  for (int o = 0; o < count; ++o) all.op[o] = specs[o];
  const int64_t total = count * n;
  head_pointers_kernel<<<grid_for(total, 256), 256, 0, stream>>>(all, total, n, ptrs);
  KOLO_CUDA_CHECK_LAUNCH();
}

}  // namespace kolo::cuda
