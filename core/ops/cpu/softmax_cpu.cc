// CPU softmax / log-softmax over the last dimension: one row per iteration, max-subtracted, accumulated in
// float (double for f64), rows spread over OpenMP threads.
#include <cmath>
#include <limits>

#include "core/ops/cpu/nn_cpu_common.h"
#include "core/ops/kernels/nn.h"

namespace kolo {
namespace {

void cpu_softmax_fwd(const Tensor& x, Tensor& y, bool log) {
  const int64_t n = x.dim() ? x.size(-1) : 1;
  const int64_t rows = n ? x.numel() / n : 0;
  cpu::dispatch_floating(x.dtype(), log ? "log_softmax" : "softmax", [&](auto tag) {
    using T = decltype(tag);
    using A = cpu::AccOf<T>;
    const T* px = static_cast<const T*>(x.data_ptr());
    T* py = static_cast<T*>(y.data_ptr());
#pragma omp parallel for schedule(static) if (rows * n > 16384)
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = px + r * n;
      T* yr = py + r * n;
      A m = -std::numeric_limits<A>::infinity();
      for (int64_t i = 0; i < n; ++i) m = std::max(m, cpu::load_as<A>(xr[i]));
      const A shift = m;  // a row that is -inf everywhere yields NaN, as in PyTorch
      A s = 0;
      for (int64_t i = 0; i < n; ++i) s += std::exp(cpu::load_as<A>(xr[i]) - shift);
      if (log) {
        const A ls = std::log(s) + shift;
        for (int64_t i = 0; i < n; ++i) yr[i] = cpu::store_as<T>(cpu::load_as<A>(xr[i]) - ls);
      } else {
        const A inv = A(1) / s;
        for (int64_t i = 0; i < n; ++i) yr[i] = cpu::store_as<T>(std::exp(cpu::load_as<A>(xr[i]) - shift) * inv);
      }
    }
  });
}

void cpu_softmax_bwd(const Tensor& gy, const Tensor& y, Tensor& gx, bool log) {
  const int64_t n = y.dim() ? y.size(-1) : 1;
  const int64_t rows = n ? y.numel() / n : 0;
  cpu::dispatch_floating(y.dtype(), log ? "log_softmax backward" : "softmax backward", [&](auto tag) {
    using T = decltype(tag);
    using A = cpu::AccOf<T>;
    const T* pg = static_cast<const T*>(gy.data_ptr());
    const T* py = static_cast<const T*>(y.data_ptr());
    T* po = static_cast<T*>(gx.data_ptr());
#pragma omp parallel for schedule(static) if (rows * n > 16384)
    for (int64_t r = 0; r < rows; ++r) {
      const T* g = pg + r * n;
      const T* yr = py + r * n;
      T* o = po + r * n;
      A dot = 0;
      if (log) {
        for (int64_t i = 0; i < n; ++i) dot += cpu::load_as<A>(g[i]);
        for (int64_t i = 0; i < n; ++i)
          o[i] = cpu::store_as<T>(cpu::load_as<A>(g[i]) - std::exp(cpu::load_as<A>(yr[i])) * dot);
      } else {
        for (int64_t i = 0; i < n; ++i) dot += cpu::load_as<A>(g[i]) * cpu::load_as<A>(yr[i]);
        for (int64_t i = 0; i < n; ++i)
          o[i] = cpu::store_as<T>(cpu::load_as<A>(yr[i]) * (cpu::load_as<A>(g[i]) - dot));
      }
    }
  });
}

}  // namespace

KOLO_REGISTER_KERNEL(softmax_fwd, CPU, cpu_softmax_fwd);
KOLO_REGISTER_KERNEL(softmax_bwd, CPU, cpu_softmax_bwd);

}  // namespace kolo
