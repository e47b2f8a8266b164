// CPU layer norm over the last dimension: two-pass mean/variance per row, rows over OpenMP threads; the
// backward reduces weight/bias gradients through per-thread partial sums (no atomics, deterministic for a
// fixed thread count).
#include <omp.h>

#include <cmath>
#include <vector>

#include "core/ops/cpu/nn_cpu_common.h"
#include "core/ops/kernels/nn.h"

namespace kolo {
namespace {

void cpu_layer_norm_fwd(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, Tensor& y,
                        Tensor& mean, Tensor& rstd) {
  const int64_t d = x.size(-1);
  const int64_t rows = d ? x.numel() / d : 0;
  cpu::dispatch_floating(x.dtype(), "layer_norm", [&](auto tag) {
    using T = decltype(tag);
    using A = cpu::AccOf<T>;
    const T* px = static_cast<const T*>(x.data_ptr());
    const T* pw = weight.defined() ? static_cast<const T*>(weight.data_ptr()) : nullptr;
    const T* pb = bias.defined() ? static_cast<const T*>(bias.data_ptr()) : nullptr;
    T* py = static_cast<T*>(y.data_ptr());
    A* pm = static_cast<A*>(mean.data_ptr());
    A* pr = static_cast<A*>(rstd.data_ptr());
#pragma omp parallel for schedule(static) if (rows * d > 16384)
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = px + r * d;
      T* yr = py + r * d;
      A s = 0;
      for (int64_t i = 0; i < d; ++i) s += cpu::load_as<A>(xr[i]);
      const A mu = s / static_cast<A>(d);
      // Two passes: the variance of values far from zero stays exact, unlike E[x^2] - E[x]^2.
      A v = 0;
      for (int64_t i = 0; i < d; ++i) {
        const A c = cpu::load_as<A>(xr[i]) - mu;
        v += c * c;
      }
      const A rs = A(1) / std::sqrt(v / static_cast<A>(d) + static_cast<A>(eps));
      pm[r] = mu;
      pr[r] = rs;
      for (int64_t i = 0; i < d; ++i) {
        A h = (cpu::load_as<A>(xr[i]) - mu) * rs;
        if (pw) h *= cpu::load_as<A>(pw[i]);
        if (pb) h += cpu::load_as<A>(pb[i]);
        yr[i] = cpu::store_as<T>(h);
      }
    }
  });
}

void cpu_layer_norm_bwd(const Tensor& gy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                        const Tensor& rstd, Tensor& gx, Tensor& gw, Tensor& gb) {
  const int64_t d = x.size(-1);
  const int64_t rows = d ? x.numel() / d : 0;
  cpu::dispatch_floating(x.dtype(), "layer_norm backward", [&](auto tag) {
    using T = decltype(tag);
    using A = cpu::AccOf<T>;
    const T* pg = static_cast<const T*>(gy.data_ptr());
    const T* px = static_cast<const T*>(x.data_ptr());
    const T* pw = weight.defined() ? static_cast<const T*>(weight.data_ptr()) : nullptr;
    const A* pm = static_cast<const A*>(mean.data_ptr());
    const A* pr = static_cast<const A*>(rstd.data_ptr());
    T* pgx = static_cast<T*>(gx.data_ptr());
    const bool want_w = gw.defined(), want_b = gb.defined();
    const int nthreads = rows * d > 16384 ? omp_get_max_threads() : 1;
    // Per-thread partial sums for the parameter gradients, in double so long batches stay accurate.
    std::vector<double> part_w(want_w ? static_cast<size_t>(nthreads * d) : 0, 0.0);
    std::vector<double> part_b(want_b ? static_cast<size_t>(nthreads * d) : 0, 0.0);
#pragma omp parallel num_threads(nthreads)
    {
      const int tid = omp_get_thread_num();
      std::vector<A> gh(static_cast<size_t>(d));
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        const T* g = pg + r * d;
        const T* xr = px + r * d;
        const A mu = pm[r], rs = pr[r];
        // gh = d loss / d xhat; gx = rs * (gh - mean(gh) - xhat * mean(gh * xhat)).
        A sum_gh = 0, sum_ghx = 0;
        for (int64_t i = 0; i < d; ++i) {
          const A gi = cpu::load_as<A>(g[i]);
          const A xh = (cpu::load_as<A>(xr[i]) - mu) * rs;
          gh[i] = pw ? gi * cpu::load_as<A>(pw[i]) : gi;
          sum_gh += gh[i];
          sum_ghx += gh[i] * xh;
          if (want_w) part_w[static_cast<size_t>(tid * d + i)] += static_cast<double>(gi * xh);
          if (want_b) part_b[static_cast<size_t>(tid * d + i)] += static_cast<double>(gi);
        }
        const A inv_d = A(1) / static_cast<A>(d);
        const A mg = sum_gh * inv_d, mgx = sum_ghx * inv_d;
        T* o = pgx + r * d;
        for (int64_t i = 0; i < d; ++i) {
          const A xh = (cpu::load_as<A>(xr[i]) - mu) * rs;
          o[i] = cpu::store_as<T>(rs * (gh[i] - mg - xh * mgx));
        }
      }
    }
    auto finish = [&](std::vector<double>& part, Tensor& out) {
      T* po = static_cast<T*>(out.data_ptr());
      for (int64_t i = 0; i < d; ++i) {
        double s = 0.0;
        for (int t = 0; t < nthreads; ++t) s += part[static_cast<size_t>(t * d + i)];
        po[i] = cpu::store_as<T>(s);
      }
    };
    if (want_w) finish(part_w, gw);
    if (want_b) finish(part_b, gb);
  });
}

}  // namespace

KOLO_REGISTER_KERNEL(layer_norm_fwd, CPU, cpu_layer_norm_fwd);
KOLO_REGISTER_KERNEL(layer_norm_bwd, CPU, cpu_layer_norm_bwd);

}  // namespace kolo
