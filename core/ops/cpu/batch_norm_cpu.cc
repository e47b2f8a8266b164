// CPU batch norm: OpenMP loops over x viewed as [outer, C, inner] (NCHW: outer = N, inner = H*W; channels
// last: outer = all rows, inner = 1). Statistics are accumulated in double and saved in f32 (f64 for f64
// inputs, so that finite-difference checks stay tight); half inputs are computed in f32.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/ops/kernels/conv.h"

namespace kolo {
namespace {

struct View3 {
  int64_t outer, c, inner;
};

View3 view3(const Tensor& x, bool channels_last) {
  const int64_t c = channels_last ? x.size(-1) : x.size(1);
  const int64_t inner = channels_last ? 1 : x.numel() / (x.size(0) * c);
  return {x.numel() / (c * inner), c, inner};
}

// a[c] = sum f_a, b[c] = sum f_b over all elements of channel c, where f(c, index, a, b) adds to a and b.
template <typename F>
void per_channel_sums(const View3& v, std::vector<double>& a, std::vector<double>& b, F&& f) {
  a.assign(v.c, 0.0);
  b.assign(v.c, 0.0);
  if (v.inner > 1) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < v.c; ++c) {
      double sa = 0, sb = 0;
      for (int64_t o = 0; o < v.outer; ++o) {
        const int64_t base = (o * v.c + c) * v.inner;
        for (int64_t i = 0; i < v.inner; ++i) f(c, base + i, sa, sb);
      }
      a[c] = sa;
      b[c] = sb;
    }
    return;
  }
  // Rows of C: each thread sums its rows into private accumulators, reduced at the end.
  const int nt = omp_get_max_threads();
  std::vector<double> pa(static_cast<size_t>(nt * v.c), 0.0), pb(pa.size(), 0.0);
#pragma omp parallel num_threads(nt)
  {
    double* ta = pa.data() + omp_get_thread_num() * v.c;
    double* tb = pb.data() + omp_get_thread_num() * v.c;
#pragma omp for schedule(static)
    for (int64_t o = 0; o < v.outer; ++o)
      for (int64_t c = 0; c < v.c; ++c) f(c, o * v.c + c, ta[c], tb[c]);
  }
  for (int t = 0; t < nt; ++t)
    for (int64_t c = 0; c < v.c; ++c) {
      a[c] += pa[t * v.c + c];
      b[c] += pb[t * v.c + c];
    }
}

// fn(c, index) for every element, parallel. Channels-last rows loop over c directly: a modulo per element
// would cost more than the arithmetic and keep the loop from vectorising.
template <typename F>
void for_each_element(const View3& v, F&& fn) {
  if (v.inner == 1) {
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < v.outer; ++o)
      for (int64_t c = 0; c < v.c; ++c) fn(c, o * v.c + c);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < v.outer * v.c; ++r) {
    const int64_t c = r % v.c;
    for (int64_t i = 0; i < v.inner; ++i) fn(c, r * v.inner + i);
  }
}

double load(const Tensor& t, int64_t i) {
  return dispatch_dtype(t.dtype(), [&](auto tag) -> double {
    using T = decltype(tag);
    return static_cast<double>(static_cast<const T*>(t.data_ptr())[i]);
  });
}

void store(Tensor& t, int64_t i, double v) {
  dispatch_dtype(t.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>) static_cast<T*>(t.data_ptr())[i] = T(static_cast<float>(v));
    else static_cast<T*>(t.data_ptr())[i] = static_cast<T>(v);
  });
}

// Per-channel affine parameter as doubles (default when undefined).
std::vector<double> channel_param(const Tensor& p, int64_t c, double dflt) {
  std::vector<double> out(c, dflt);
  if (p.defined())
    for (int64_t i = 0; i < c; ++i) out[i] = load(p, i);
  return out;
}

template <typename T, typename S>
void bn_fwd(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& rmean, Tensor& rvar, bool training,
            double momentum, double eps, bool channels_last, Tensor& y, Tensor& save_mean, Tensor& save_invstd) {
  const View3 v = view3(x, channels_last);
  const T* px = static_cast<const T*>(x.data_ptr());
  T* py = static_cast<T*>(y.data_ptr());
  std::vector<double> mean(v.c), invstd(v.c);
  if (training) {
    const double m = static_cast<double>(v.outer * v.inner);
    // One pass for sum and sum of squares: the data is read once instead of twice, and double accumulators
    // keep E[x^2] - E[x]^2 accurate for activations whose mean is not far larger than their spread.
    std::vector<double> s, sq;
    per_channel_sums(v, s, sq, [&](int64_t, int64_t i, double& a, double& b) {
      const double xi = static_cast<double>(px[i]);
      a += xi;
      b += xi * xi;
    });
    std::vector<double> ss(v.c);
    for (int64_t c = 0; c < v.c; ++c) {
      mean[c] = s[c] / m;
      ss[c] = std::max(0.0, sq[c] - s[c] * mean[c]);  // sum of squared deviations
    }
    for (int64_t c = 0; c < v.c; ++c) {
      const double var = ss[c] / m;
      invstd[c] = 1.0 / std::sqrt(var + eps);
      if (rmean.defined()) store(rmean, c, (1 - momentum) * load(rmean, c) + momentum * mean[c]);
      if (rvar.defined()) store(rvar, c, (1 - momentum) * load(rvar, c) + momentum * ss[c] / (m - 1));
    }
  } else {
    for (int64_t c = 0; c < v.c; ++c) {
      mean[c] = load(rmean, c);
      invstd[c] = 1.0 / std::sqrt(load(rvar, c) + eps);
    }
  }
  const std::vector<double> w = channel_param(weight, v.c, 1.0), b = channel_param(bias, v.c, 0.0);
  // y = x * scale + shift with per-channel scale = w * invstd, shift = b - mean * scale.
  std::vector<S> scale(v.c), shift(v.c);
  for (int64_t c = 0; c < v.c; ++c) {
    scale[c] = static_cast<S>(w[c] * invstd[c]);
    shift[c] = static_cast<S>(b[c] - mean[c] * w[c] * invstd[c]);
    static_cast<S*>(save_mean.data_ptr())[c] = static_cast<S>(mean[c]);
    static_cast<S*>(save_invstd.data_ptr())[c] = static_cast<S>(invstd[c]);
  }
  for_each_element(v, [&](int64_t c, int64_t i) { py[i] = static_cast<T>(static_cast<S>(px[i]) * scale[c] + shift[c]); });
}

template <typename T, typename S>
void bn_bwd(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& save_mean,
            const Tensor& save_invstd, bool training, bool channels_last, Tensor& dx, Tensor& dweight, Tensor& dbias) {
  const View3 v = view3(x, channels_last);
  const T* px = static_cast<const T*>(x.data_ptr());
  const T* pdy = static_cast<const T*>(dy.data_ptr());
  const S* mean = static_cast<const S*>(save_mean.data_ptr());
  const S* invstd = static_cast<const S*>(save_invstd.data_ptr());
  // sum_dy[c] = sum dy, sum_dyx[c] = sum dy * (x - mean) (both needed for dweight and the training dx).
  std::vector<double> sum_dy, sum_dyx;
  per_channel_sums(v, sum_dy, sum_dyx, [&](int64_t c, int64_t i, double& a, double& b) {
    const double g = pdy[i];
    a += g;
    b += g * (static_cast<double>(px[i]) - mean[c]);
  });
  for (int64_t c = 0; c < v.c; ++c) {
    if (dweight.defined()) store(dweight, c, sum_dyx[c] * invstd[c]);
    if (dbias.defined()) store(dbias, c, sum_dy[c]);
  }
  if (!dx.defined()) return;
  T* pdx = static_cast<T*>(dx.data_ptr());
  const std::vector<double> w = channel_param(weight, v.c, 1.0);
  // training: dx = w*invstd * (dy - mean(dy) - xhat * mean(dy*xhat)), xhat = (x - mean) * invstd;
  // eval: the statistics are constants, dx = w*invstd * dy.
  const double m = static_cast<double>(v.outer * v.inner);
  std::vector<S> k(v.c), a(v.c), b(v.c);
  for (int64_t c = 0; c < v.c; ++c) {
    const double is = invstd[c];
    k[c] = static_cast<S>(w[c] * is);
    a[c] = training ? static_cast<S>(sum_dy[c] / m) : S(0);
    b[c] = training ? static_cast<S>(sum_dyx[c] / m * is * is) : S(0);
  }
  for_each_element(v, [&](int64_t c, int64_t i) {
    const S d = static_cast<S>(pdy[i]) - a[c] - (static_cast<S>(px[i]) - mean[c]) * b[c];
    pdx[i] = static_cast<T>(k[c] * d);
  });
}

void cpu_batch_norm_fwd(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& rmean, Tensor& rvar,
                        bool training, double momentum, double eps, bool channels_last, Tensor& y, Tensor& save_mean,
                        Tensor& save_invstd) {
  switch (x.dtype()) {
    case DType::F64:
      return bn_fwd<double, double>(x, weight, bias, rmean, rvar, training, momentum, eps, channels_last, y,
                                    save_mean, save_invstd);
    case DType::F32:
      return bn_fwd<float, float>(x, weight, bias, rmean, rvar, training, momentum, eps, channels_last, y,
                                  save_mean, save_invstd);
    case DType::BF16:
      return bn_fwd<bf16, float>(x, weight, bias, rmean, rvar, training, momentum, eps, channels_last, y,
                                 save_mean, save_invstd);
    case DType::F16:
      return bn_fwd<f16, float>(x, weight, bias, rmean, rvar, training, momentum, eps, channels_last, y,
                                save_mean, save_invstd);
    default: KOLO_FAIL("batch_norm: unsupported dtype for ", x.describe());
  }
}

void cpu_batch_norm_bwd(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& save_mean,
                        const Tensor& save_invstd, bool training, bool channels_last, Tensor& dx, Tensor& dweight,
                        Tensor& dbias) {
  switch (x.dtype()) {
    case DType::F64:
      return bn_bwd<double, double>(dy, x, weight, save_mean, save_invstd, training, channels_last, dx, dweight,
                                    dbias);
    case DType::F32:
      return bn_bwd<float, float>(dy, x, weight, save_mean, save_invstd, training, channels_last, dx, dweight, dbias);
    case DType::BF16:
      return bn_bwd<bf16, float>(dy, x, weight, save_mean, save_invstd, training, channels_last, dx, dweight, dbias);
    case DType::F16:
      return bn_bwd<f16, float>(dy, x, weight, save_mean, save_invstd, training, channels_last, dx, dweight, dbias);
    default: KOLO_FAIL("batch_norm: unsupported dtype for ", x.describe());
  }
}

}  // namespace

KOLO_REGISTER_KERNEL(batch_norm_fwd, CPU, cpu_batch_norm_fwd);
KOLO_REGISTER_KERNEL(batch_norm_bwd, CPU, cpu_batch_norm_bwd);

}  // namespace kolo
