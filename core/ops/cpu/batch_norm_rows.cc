// f32 channels-last batch-norm row loops, compiled for AVX-512, AVX2 and baseline x86-64 and picked at load
// time (see batch_norm_rows.h). Every loop runs over c with per-channel constants, so each vectorises across
// channels; the branches on null pointers sit outside the loops.
#include "core/ops/cpu/batch_norm_rows.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define KOLO_ROW_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KOLO_ROW_CLONES
#endif

namespace kolo::cpu {

KOLO_ROW_CLONES
void bn_rows_stats(const float* __restrict x, int64_t r0, int64_t r1, int64_t C, double* __restrict s,
                   double* __restrict sq) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * C;
    for (int64_t c = 0; c < C; ++c) {
      const double v = xr[c];
      s[c] += v;
      sq[c] += v * v;
    }
  }
}

KOLO_ROW_CLONES
void bn_rows_apply(const float* __restrict x, const float* __restrict residual, bool relu,
                   const float* __restrict scale, const float* __restrict shift, int64_t r0, int64_t r1, int64_t C,
                   float* __restrict y) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * C;
    float* yr = y + r * C;
    if (!relu) {
      for (int64_t c = 0; c < C; ++c) yr[c] = xr[c] * scale[c] + shift[c];
    } else if (residual == nullptr) {
      for (int64_t c = 0; c < C; ++c) {
        const float z = xr[c] * scale[c] + shift[c];
        yr[c] = z > 0.0f ? z : 0.0f;
      }
    } else {
      const float* rr = residual + r * C;
      for (int64_t c = 0; c < C; ++c) {
        const float z = (xr[c] * scale[c] + shift[c]) + rr[c];
        yr[c] = z > 0.0f ? z : 0.0f;
      }
    }
  }
}

KOLO_ROW_CLONES
void bn_rows_grad_sums(const float* __restrict dy, const float* __restrict mask, const float* __restrict x,
                       const float* __restrict mean, int64_t r0, int64_t r1, int64_t C, double* __restrict a,
                       double* __restrict b, float* __restrict g_out) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* dyr = dy + r * C;
    const float* xr = x + r * C;
    if (mask == nullptr) {
      for (int64_t c = 0; c < C; ++c) {
        const double g = dyr[c];
        a[c] += g;
        b[c] += g * (static_cast<double>(xr[c]) - mean[c]);
      }
      continue;
    }
    const float* mr = mask + r * C;
    if (g_out == nullptr) {
      for (int64_t c = 0; c < C; ++c) {
        const double g = dyr[c] * (mr[c] > 0.0f ? 1.0f : 0.0f);
        a[c] += g;
        b[c] += g * (static_cast<double>(xr[c]) - mean[c]);
      }
      continue;
    }
    float* gr = g_out + r * C;
    for (int64_t c = 0; c < C; ++c) {
      const float gf = dyr[c] * (mr[c] > 0.0f ? 1.0f : 0.0f);
      gr[c] = gf;
      const double g = gf;
      a[c] += g;
      b[c] += g * (static_cast<double>(xr[c]) - mean[c]);
    }
  }
}

KOLO_ROW_CLONES
void bn_rows_dx(const float* __restrict dy, const float* __restrict mask, const float* __restrict x,
                const float* __restrict mean, const float* __restrict a, const float* __restrict b,
                const float* __restrict k, int64_t r0, int64_t r1, int64_t C, float* __restrict dx) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* dyr = dy + r * C;
    const float* xr = x + r * C;
    float* dxr = dx + r * C;
    if (mask == nullptr) {
      for (int64_t c = 0; c < C; ++c) dxr[c] = k[c] * (dyr[c] - a[c] - (xr[c] - mean[c]) * b[c]);
    } else {
      const float* mr = mask + r * C;
      for (int64_t c = 0; c < C; ++c) {
        const float g = dyr[c] * (mr[c] > 0.0f ? 1.0f : 0.0f);
        dxr[c] = k[c] * (g - a[c] - (xr[c] - mean[c]) * b[c]);
      }
    }
  }
}

}  // namespace kolo::cpu
