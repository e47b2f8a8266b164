// CPU batch norm: OpenMP loops over x viewed as [outer, C, inner] (NCHW: outer = N, inner = H*W; channels
// last: outer = all rows, inner = 1). Statistics are accumulated in double and saved in f32 (f64 for f64
// inputs, so that finite-difference checks stay tight); half inputs are computed in f32. f32 tensors
// take the row (channels last) and plane (NCHW) loops of batch_norm_rows.h, compiled for the CPU's vector width. The fused
// batch norm (+ residual) + ReLU kernels share these loops: only the last forward pass and the gradient read
// in the backward passes differ.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/ops/cpu/batch_norm_rows.h"
#include "core/ops/kernels/batch_norm_act.h"
#include "core/ops/kernels/conv.h"

namespace kolo {
namespace {

struct View3 {
  int64_t outer, c, inner;
};

View3 view3(const Tensor& x, bool channels_last) {
  const int64_t c = channels_last ? x.size(-1) : x.size(1);
  int64_t inner = 1;  // from the shape, not numel(): an empty batch (an evaluation shard of none) has numel 0
  if (!channels_last)
    for (int64_t d = 2; d < x.dim(); ++d) inner *= x.size(d);
  return {c * inner > 0 ? x.numel() / (c * inner) : 0, c, inner};
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

// Static partition of `rows` among the threads of the current parallel region.
std::pair<int64_t, int64_t> my_rows(int64_t rows) {
  const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
  return {rows * t / nt, rows * (t + 1) / nt};
}

// a[c], b[c] = sums over all rows of what fn(r0, r1, a_thread, b_thread) adds for its block of rows.
template <typename F>
void row_sums(const View3& v, std::vector<double>& a, std::vector<double>& b, F&& fn) {
  const int nt = omp_get_max_threads();
  std::vector<double> pa(static_cast<size_t>(nt * v.c), 0.0), pb(pa.size(), 0.0);
#pragma omp parallel num_threads(nt)
  {
    const auto [r0, r1] = my_rows(v.outer);
    fn(r0, r1, pa.data() + omp_get_thread_num() * v.c, pb.data() + omp_get_thread_num() * v.c);
  }
  a.assign(v.c, 0.0);
  b.assign(v.c, 0.0);
  for (int t = 0; t < nt; ++t)
    for (int64_t c = 0; c < v.c; ++c) {
      a[c] += pa[t * v.c + c];
      b[c] += pb[t * v.c + c];
    }
}

// fn(r0, r1) on each thread's block of rows.
template <typename F>
void for_row_blocks(const View3& v, F&& fn) {
#pragma omp parallel
  {
    const auto [r0, r1] = my_rows(v.outer);
    fn(r0, r1);
  }
}

// NCHW: a[c], b[c] = sums over the channel's planes (one per outer index) of what fn(c, offset, a, b) adds
// for the plane starting at `offset`; parallel over channels.
template <typename F>
void plane_sums(const View3& v, std::vector<double>& a, std::vector<double>& b, F&& fn) {
  a.assign(v.c, 0.0);
  b.assign(v.c, 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < v.c; ++c)
    for (int64_t o = 0; o < v.outer; ++o) fn(c, (o * v.c + c) * v.inner, a[c], b[c]);
}

// fn(c, offset) for every plane of every channel, parallel.
template <typename F>
void for_each_plane(const View3& v, F&& fn) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < v.outer * v.c; ++r) fn(r % v.c, r * v.inner);
}

template <typename T>
constexpr bool kF32Loops = std::is_same_v<T, float>;

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

// y = bn(x), or relu(bn(x) [+ residual]) when `relu`. Each intermediate is rounded to T as the unfused ops
// (batch_norm, add, relu) store it, so the fused result equals theirs in every dtype.
template <typename T, typename S>
void bn_fwd(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& residual, bool relu,
            Tensor& rmean, Tensor& rvar, bool training, double momentum, double eps, bool channels_last, Tensor& y,
            Tensor& save_mean, Tensor& save_invstd) {
  const View3 v = view3(x, channels_last);
  const T* px = static_cast<const T*>(x.data_ptr());
  T* py = static_cast<T*>(y.data_ptr());
  std::vector<double> mean(v.c), invstd(v.c);
  if (training) {
    const double m = static_cast<double>(v.outer * v.inner);
    // One pass for sum and sum of squares: the data is read once instead of twice, and double accumulators
    // keep E[x^2] - E[x]^2 accurate for activations whose mean is not far larger than their spread.
    std::vector<double> s, sq;
    if constexpr (kF32Loops<T>) {
      if (v.inner == 1) {
        row_sums(v, s, sq, [&](int64_t r0, int64_t r1, double* a, double* b) { cpu::bn_rows_stats(px, r0, r1, v.c, a, b); });
      } else {
        plane_sums(v, s, sq, [&](int64_t, int64_t off, double& a, double& b) {
          cpu::bn_plane_stats(px + off, v.inner, a, b);
        });
      }
    }
    if (s.empty()) {
      per_channel_sums(v, s, sq, [&](int64_t, int64_t i, double& a, double& b) {
        const double xi = static_cast<double>(px[i]);
        a += xi;
        b += xi * xi;
      });
    }
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
  if constexpr (kF32Loops<T>) {
    const T* pr = residual.defined() ? static_cast<const T*>(residual.data_ptr()) : nullptr;
    if (v.inner == 1) {
      for_row_blocks(v, [&](int64_t r0, int64_t r1) {
        cpu::bn_rows_apply(px, pr, relu, scale.data(), shift.data(), r0, r1, v.c, py);
      });
    } else {
      for_each_plane(v, [&](int64_t c, int64_t off) {
        cpu::bn_plane_apply(px + off, pr ? pr + off : nullptr, relu, scale[c], shift[c], v.inner, py + off);
      });
    }
    return;
  }
  if (!relu) {
    for_each_element(v, [&](int64_t c, int64_t i) { py[i] = static_cast<T>(static_cast<S>(px[i]) * scale[c] + shift[c]); });
    return;
  }
  const auto relu_t = [](T z) { return static_cast<S>(z) < S(0) ? T(0.0f) : z; };  // NaN passes, as relu()
  if (!residual.defined()) {
    for_each_element(v, [&](int64_t c, int64_t i) {
      py[i] = relu_t(static_cast<T>(static_cast<S>(px[i]) * scale[c] + shift[c]));
    });
    return;
  }
  const T* pr = static_cast<const T*>(residual.data_ptr());
  for_each_element(v, [&](int64_t c, int64_t i) {
    const T z = static_cast<T>(static_cast<S>(px[i]) * scale[c] + shift[c]);
    py[i] = relu_t(static_cast<T>(static_cast<S>(z) + static_cast<S>(pr[i])));
  });
}

// Batch-norm gradients of an upstream gradient g in two passes: `sums(sum_g, sum_gx)` fills the per-channel
// sums of g and g * (x - mean); `dx_pass(k, a, b)` then writes dx = k * (g - a - (x - mean) * b).
template <typename T, typename S, typename Sums, typename DxPass>
void bn_bwd(const View3& v, const Tensor& weight, const Tensor& save_invstd, bool training, Tensor& dx,
            Tensor& dweight, Tensor& dbias, Sums&& sums, DxPass&& dx_pass) {
  const S* invstd = static_cast<const S*>(save_invstd.data_ptr());
  std::vector<double> sum_dy, sum_dyx;
  sums(sum_dy, sum_dyx);
  for (int64_t c = 0; c < v.c; ++c) {
    if (dweight.defined()) store(dweight, c, sum_dyx[c] * invstd[c]);
    if (dbias.defined()) store(dbias, c, sum_dy[c]);
  }
  if (!dx.defined()) return;
  const std::vector<double> w = channel_param(weight, v.c, 1.0);
  // training: dx = w*invstd * (g - mean(g) - xhat * mean(g*xhat)), xhat = (x - mean) * invstd;
  // eval: the statistics are constants, dx = w*invstd * g.
  const double m = static_cast<double>(v.outer * v.inner);
  std::vector<S> k(v.c), a(v.c), b(v.c);
  for (int64_t c = 0; c < v.c; ++c) {
    const double is = invstd[c];
    k[c] = static_cast<S>(w[c] * is);
    a[c] = training ? static_cast<S>(sum_dy[c] / m) : S(0);
    b[c] = training ? static_cast<S>(sum_dyx[c] / m * is * is) : S(0);
  }
  dx_pass(k, a, b);
}

// g given per element: `sum_grad(i)` in the statistics pass (it may store g elsewhere on the way), `grad(i)`
// in the dx pass.
template <typename T, typename S, typename SumGrad, typename Grad>
void bn_bwd_elementwise(const View3& v, const Tensor& x, const Tensor& weight, const Tensor& save_mean,
                        const Tensor& save_invstd, bool training, Tensor& dx, Tensor& dweight, Tensor& dbias,
                        SumGrad&& sum_grad, Grad&& grad) {
  const T* px = static_cast<const T*>(x.data_ptr());
  const S* mean = static_cast<const S*>(save_mean.data_ptr());
  const auto sums = [&](std::vector<double>& sg, std::vector<double>& sgx) {
    per_channel_sums(v, sg, sgx, [&](int64_t c, int64_t i, double& a, double& b) {
      const double g = static_cast<double>(sum_grad(i));
      a += g;
      b += g * (static_cast<double>(px[i]) - mean[c]);
    });
  };
  const auto dx_pass = [&](const std::vector<S>& k, const std::vector<S>& a, const std::vector<S>& b) {
    T* pdx = static_cast<T*>(dx.data_ptr());
    for_each_element(v, [&](int64_t c, int64_t i) {
      const S d = grad(i) - a[c] - (static_cast<S>(px[i]) - mean[c]) * b[c];
      pdx[i] = static_cast<T>(k[c] * d);
    });
  };
  bn_bwd<T, S>(v, weight, save_invstd, training, dx, dweight, dbias, sums, dx_pass);
}

// f32, either layout: g = dy, or dy * (mask > 0) when mask is not null; g_out (if not null) receives g in the
// statistics pass and is the dx pass's gradient.
void bn_bwd_f32(const View3& v, const Tensor& x, const Tensor& weight, const Tensor& save_mean,
                const Tensor& save_invstd, bool training, Tensor& dx, Tensor& dweight, Tensor& dbias, const float* dy,
                const float* mask, float* g_out) {
  const float* px = static_cast<const float*>(x.data_ptr());
  const float* mean = static_cast<const float*>(save_mean.data_ptr());
  const auto sums = [&](std::vector<double>& sg, std::vector<double>& sgx) {
    if (v.inner == 1) {
      row_sums(v, sg, sgx, [&](int64_t r0, int64_t r1, double* a, double* b) {
        cpu::bn_rows_grad_sums(dy, mask, px, mean, r0, r1, v.c, a, b, g_out);
      });
      return;
    }
    plane_sums(v, sg, sgx, [&](int64_t c, int64_t off, double& a, double& b) {
      cpu::bn_plane_grad_sums(dy + off, mask ? mask + off : nullptr, px + off, mean[c], v.inner, a, b,
                              g_out ? g_out + off : nullptr);
    });
  };
  const auto dx_pass = [&](const std::vector<float>& k, const std::vector<float>& a, const std::vector<float>& b) {
    float* pdx = static_cast<float*>(dx.data_ptr());
    const float* g = g_out != nullptr ? g_out : dy;
    const float* m = g_out != nullptr ? nullptr : mask;
    if (v.inner == 1) {
      for_row_blocks(v, [&](int64_t r0, int64_t r1) {
        cpu::bn_rows_dx(g, m, px, mean, a.data(), b.data(), k.data(), r0, r1, v.c, pdx);
      });
      return;
    }
    for_each_plane(v, [&](int64_t c, int64_t off) {
      cpu::bn_plane_dx(g + off, m ? m + off : nullptr, px + off, mean[c], a[c], b[c], k[c], v.inner, pdx + off);
    });
  };
  bn_bwd<float, float>(v, weight, save_invstd, training, dx, dweight, dbias, sums, dx_pass);
}

template <typename T, typename S>
void bn_plain_bwd(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& save_mean,
                  const Tensor& save_invstd, bool training, bool channels_last, Tensor& dx, Tensor& dweight,
                  Tensor& dbias) {
  const View3 v = view3(x, channels_last);
  const T* pdy = static_cast<const T*>(dy.data_ptr());
  if constexpr (kF32Loops<T>) {
    return bn_bwd_f32(v, x, weight, save_mean, save_invstd, training, dx, dweight, dbias, pdy, nullptr, nullptr);
  }
  const auto g = [pdy](int64_t i) { return static_cast<S>(pdy[i]); };
  bn_bwd_elementwise<T, S>(v, x, weight, save_mean, save_invstd, training, dx, dweight, dbias, g, g);
}

// dz = dy * (y > 0), written as relu's backward computes it (a product, so a non-finite dy stays as it would).
// With a residual, the statistics pass stores dz as its gradient and the dx pass reads it back (one stream
// instead of dy and y).
template <typename T, typename S>
void bn_act_bwd(const Tensor& dy, const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& save_mean,
                const Tensor& save_invstd, bool training, bool channels_last, Tensor& dx, Tensor& dweight,
                Tensor& dbias, Tensor& dres) {
  const T* pdy = static_cast<const T*>(dy.data_ptr());
  const T* py = static_cast<const T*>(y.data_ptr());
  T* pr = dres.defined() ? static_cast<T*>(dres.data_ptr()) : nullptr;
  const View3 v = view3(x, channels_last);
  if constexpr (kF32Loops<T>) {
    return bn_bwd_f32(v, x, weight, save_mean, save_invstd, training, dx, dweight, dbias, pdy, py, pr);
  }
  const auto dz = [pdy, py](int64_t i) {
    return static_cast<S>(static_cast<T>(static_cast<S>(pdy[i]) * (static_cast<S>(py[i]) > S(0) ? S(1) : S(0))));
  };
  if (pr == nullptr) {
    bn_bwd_elementwise<T, S>(v, x, weight, save_mean, save_invstd, training, dx, dweight, dbias, dz, dz);
    return;
  }
  const auto dz_store = [&](int64_t i) {
    const S g = dz(i);
    pr[i] = static_cast<T>(g);
    return g;
  };
  const auto dz_load = [pr](int64_t i) { return static_cast<S>(pr[i]); };
  bn_bwd_elementwise<T, S>(v, x, weight, save_mean, save_invstd, training, dx, dweight, dbias, dz_store, dz_load);
}

// Calls fn(T{}, S{}) for x's dtype: the storage type and the type the arithmetic runs in.
template <typename Fn>
void dispatch_bn(const char* op, const Tensor& x, Fn&& fn) {
  switch (x.dtype()) {
    case DType::F64: return fn(double{}, double{});
    case DType::F32: return fn(float{}, float{});
    case DType::BF16: return fn(bf16{}, float{});
    case DType::F16: return fn(f16{}, float{});
    default: KOLO_FAIL(op, ": unsupported dtype for ", x.describe());
  }
}

void cpu_batch_norm_fwd(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& rmean, Tensor& rvar,
                        bool training, double momentum, double eps, bool channels_last, Tensor& y, Tensor& save_mean,
                        Tensor& save_invstd) {
  dispatch_bn("batch_norm", x, [&](auto t, auto s) {
    bn_fwd<decltype(t), decltype(s)>(x, weight, bias, Tensor(), false, rmean, rvar, training, momentum, eps,
                                     channels_last, y, save_mean, save_invstd);
  });
}

void cpu_batch_norm_bwd(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& save_mean,
                        const Tensor& save_invstd, bool training, bool channels_last, Tensor& dx, Tensor& dweight,
                        Tensor& dbias) {
  dispatch_bn("batch_norm", x, [&](auto t, auto s) {
    bn_plain_bwd<decltype(t), decltype(s)>(dy, x, weight, save_mean, save_invstd, training, channels_last, dx,
                                           dweight, dbias);
  });
}

void cpu_batch_norm_act_fwd(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& residual,
                            Tensor& rmean, Tensor& rvar, bool training, double momentum, double eps,
                            bool channels_last, Tensor& y, Tensor& save_mean, Tensor& save_invstd) {
  dispatch_bn("batch_norm_act", x, [&](auto t, auto s) {
    bn_fwd<decltype(t), decltype(s)>(x, weight, bias, residual, true, rmean, rvar, training, momentum, eps,
                                     channels_last, y, save_mean, save_invstd);
  });
}

// The mask comes from y whether or not a residual was added (the bias is not needed).
void cpu_batch_norm_act_bwd(const Tensor& dy, const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor&,
                            const Tensor& save_mean, const Tensor& save_invstd, bool training, bool channels_last,
                            bool, Tensor& dx, Tensor& dweight, Tensor& dbias, Tensor& dres) {
  dispatch_bn("batch_norm_act", x, [&](auto t, auto s) {
    bn_act_bwd<decltype(t), decltype(s)>(dy, y, x, weight, save_mean, save_invstd, training, channels_last, dx,
                                         dweight, dbias, dres);
  });
}

}  // namespace

KOLO_REGISTER_KERNEL(batch_norm_fwd, CPU, cpu_batch_norm_fwd);
KOLO_REGISTER_KERNEL(batch_norm_bwd, CPU, cpu_batch_norm_bwd);
KOLO_REGISTER_KERNEL(batch_norm_act_fwd, CPU, cpu_batch_norm_act_fwd);
KOLO_REGISTER_KERNEL(batch_norm_act_bwd, CPU, cpu_batch_norm_act_bwd);

}  // namespace kolo
