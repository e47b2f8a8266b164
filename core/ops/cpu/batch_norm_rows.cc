// f32 batch-norm loops, compiled for AVX-512, AVX2 and baseline x86-64 and picked at load time
// (core/ops/cpu/isa_clones.h). Channels-last loops run over c with per-channel constants, so each vectorises
// across channels; NCHW plane loops vectorise along the plane (sums as OpenMP simd reductions). The branches on
// null pointers sit outside the loops.
#include "core/ops/cpu/batch_norm_rows.h"

#include "core/ops/cpu/isa_clones.h"

namespace kolo::cpu {

KOLO_ISA_CLONES
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

KOLO_ISA_CLONES
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
        yr[c] = z < 0.0f ? 0.0f : z;  // NaN passes, as relu()
      }
    } else {
      const float* rr = residual + r * C;
      for (int64_t c = 0; c < C; ++c) {
        const float z = (xr[c] * scale[c] + shift[c]) + rr[c];
        yr[c] = z < 0.0f ? 0.0f : z;  // NaN passes, as relu()
      }
    }
  }
}

KOLO_ISA_CLONES
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

KOLO_ISA_CLONES
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

KOLO_ISA_CLONES
void bn_plane_stats(const float* __restrict x, int64_t n, double& s, double& sq) {
  double a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    a += v;
    b += v * v;
  }
  s += a;
  sq += b;
}

KOLO_ISA_CLONES
void bn_plane_apply(const float* __restrict x, const float* __restrict residual, bool relu, float scale, float shift,
                    int64_t n, float* __restrict y) {
  if (!relu) {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale + shift;
  } else if (residual == nullptr) {
    for (int64_t i = 0; i < n; ++i) {
      const float z = x[i] * scale + shift;
      y[i] = z < 0.0f ? 0.0f : z;  // NaN passes, as relu()
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const float z = (x[i] * scale + shift) + residual[i];
      y[i] = z < 0.0f ? 0.0f : z;  // NaN passes, as relu()
    }
  }
}

KOLO_ISA_CLONES
void bn_plane_grad_sums(const float* __restrict dy, const float* __restrict mask, const float* __restrict x,
                        float mean, int64_t n, double& a_out, double& b_out, float* __restrict g_out) {
  double a = 0, b = 0;
  const double m = mean;
  if (mask == nullptr) {
#pragma omp simd reduction(+ : a, b)
    for (int64_t i = 0; i < n; ++i) {
      const double g = dy[i];
      a += g;
      b += g * (static_cast<double>(x[i]) - m);
    }
  } else if (g_out == nullptr) {
#pragma omp simd reduction(+ : a, b)
    for (int64_t i = 0; i < n; ++i) {
      const double g = dy[i] * (mask[i] > 0.0f ? 1.0f : 0.0f);
      a += g;
      b += g * (static_cast<double>(x[i]) - m);
    }
  } else {
#pragma omp simd reduction(+ : a, b)
    for (int64_t i = 0; i < n; ++i) {
      const float gf = dy[i] * (mask[i] > 0.0f ? 1.0f : 0.0f);
      g_out[i] = gf;
      const double g = gf;
      a += g;
      b += g * (static_cast<double>(x[i]) - m);
    }
  }
  a_out += a;
  b_out += b;
}

KOLO_ISA_CLONES
void bn_plane_dx(const float* __restrict dy, const float* __restrict mask, const float* __restrict x, float mean,
                 float a, float b, float k, int64_t n, float* __restrict dx) {
  if (mask == nullptr) {
    for (int64_t i = 0; i < n; ++i) dx[i] = k * (dy[i] - a - (x[i] - mean) * b);
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const float g = dy[i] * (mask[i] > 0.0f ? 1.0f : 0.0f);
      dx[i] = k * (g - a - (x[i] - mean) * b);
    }
  }
}

}  // namespace kolo::cpu
