// CPU inverted dropout: the keep decision for element i is a pure function of (seed, base + i), so the
// forward and the backward (applied to the gradient) agree without storing a mask, on any thread count.
// dropout(relu(x))'s backward needs no counters: its output says which elements passed.
#include "core/ops/cpu/nn_cpu_common.h"
#include "core/ops/kernels/nn.h"

namespace kolo {
namespace {

// 1 / (1 - p), the scale of kept elements; 0 when p == 1 drops everything.
template <typename A>
A keep_scale_of(double p) {
  return p < 1.0 ? static_cast<A>(1.0 / (1.0 - p)) : A(0);
}

void cpu_dropout_apply(const Tensor& x, const Tensor& residual, bool relu, double p, uint64_t seed, uint64_t base,
                       Tensor& y) {
  const int64_t n = x.numel();
  cpu::dispatch_floating(x.dtype(), "dropout", [&](auto tag) {
    using T = decltype(tag);
    using A = cpu::AccOf<T>;
    const T* px = static_cast<const T*>(x.data_ptr());
    const T* pr = residual.defined() ? static_cast<const T*>(residual.data_ptr()) : nullptr;
    T* py = static_cast<T*>(y.data_ptr());
    const float pf = static_cast<float>(p);
    const A keep_scale = keep_scale_of<A>(p);
#pragma omp parallel for schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; ++i) {
      const bool keep = Generator::uniform01(seed, base + static_cast<uint64_t>(i)) >= pf;
      A v = cpu::load_as<A>(px[i]);
      if (relu) v = v < A(0) ? A(0) : v;  // NaN passes, as relu()
      const A d = keep ? v * keep_scale : A(0);
      py[i] = cpu::store_as<T>(pr ? cpu::load_as<A>(pr[i]) + d : d);
    }
  });
}

void cpu_relu_dropout_backward(const Tensor& g, const Tensor& y, double p, Tensor& gx) {
  const int64_t n = g.numel();
  cpu::dispatch_floating(g.dtype(), "relu_dropout backward", [&](auto tag) {
    using T = decltype(tag);
    using A = cpu::AccOf<T>;
    const T* pg = static_cast<const T*>(g.data_ptr());
    const T* py = static_cast<const T*>(y.data_ptr());
    T* out = static_cast<T*>(gx.data_ptr());
    const A keep_scale = keep_scale_of<A>(p);
#pragma omp parallel for schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; ++i)
      out[i] = cpu::store_as<T>(cpu::load_as<A>(py[i]) > A(0) ? cpu::load_as<A>(pg[i]) * keep_scale : A(0));
  });
}

}  // namespace

KOLO_REGISTER_KERNEL(dropout_apply, CPU, cpu_dropout_apply);
KOLO_REGISTER_KERNEL(relu_dropout_backward, CPU, cpu_relu_dropout_backward);

}  // namespace kolo
