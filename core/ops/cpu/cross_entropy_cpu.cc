// CPU fused log-softmax + label-smoothed cross-entropy (mean over non-ignored rows), forward and backward.
#include <cmath>
#include <limits>

#include "core/ops/cpu/nn_cpu_common.h"
#include "core/ops/kernels/nn.h"

namespace kolo {
namespace {

// Throws naming the first target outside [0, C) that is not ignore_index.
void check_targets(const int64_t* t, int64_t n, int64_t c, int64_t ignore_index) {
  for (int64_t i = 0; i < n; ++i)
    KOLO_CHECK(t[i] == ignore_index || (t[i] >= 0 && t[i] < c), "cross_entropy: target ", t[i], " at row ", i,
               " out of range [0, ", c, ") (ignore_index ", ignore_index, ")");
}

void cpu_cross_entropy_fwd(const Tensor& logits, const Tensor& targets, double smoothing, int64_t ignore_index,
                           Tensor& loss, Tensor& lse) {
  const int64_t n = logits.size(0), c = logits.size(1);
  const int64_t* pt = targets.data<int64_t>();
  check_targets(pt, n, c, ignore_index);
  cpu::dispatch_floating(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    using A = cpu::AccOf<T>;
    const T* pz = static_cast<const T*>(logits.data_ptr());
    A* pl = static_cast<A*>(lse.data_ptr());
    const double eps = smoothing;
    // The batch total is summed in double whatever the dtype: a loss over many tokens stays accurate.
    double total = 0.0;
    int64_t count = 0;
#pragma omp parallel for schedule(static) reduction(+ : total, count) if (n * c > 16384)
    for (int64_t r = 0; r < n; ++r) {
      const T* z = pz + r * c;
      A m = -std::numeric_limits<A>::infinity();
      for (int64_t i = 0; i < c; ++i) m = std::max(m, cpu::load_as<A>(z[i]));
      A s = 0, zsum = 0;
      for (int64_t i = 0; i < c; ++i) {
        const A zi = cpu::load_as<A>(z[i]);
        s += std::exp(zi - m);
        zsum += zi;
      }
      const A l = m + std::log(s);
      pl[r] = l;
      if (pt[r] == ignore_index) continue;
      const double nll = static_cast<double>(l - cpu::load_as<A>(z[pt[r]]));
      const double smooth = static_cast<double>(l - zsum / static_cast<A>(c));
      total += (1.0 - eps) * nll + eps * smooth;
      count += 1;
    }
    const double mean = total / static_cast<double>(count);  // 0/0 = NaN when every row is ignored
    *static_cast<A*>(loss.data_ptr()) = static_cast<A>(mean);
  });
}

void cpu_cross_entropy_bwd(const Tensor& grad_loss, const Tensor& logits, const Tensor& targets, const Tensor& lse,
                           double smoothing, int64_t ignore_index, Tensor& grad_logits) {
  const int64_t n = logits.size(0), c = logits.size(1);
  const int64_t* pt = targets.data<int64_t>();
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) count += pt[i] != ignore_index;
  cpu::dispatch_floating(logits.dtype(), "cross_entropy backward", [&](auto tag) {
    using T = decltype(tag);
    using A = cpu::AccOf<T>;
    const T* pz = static_cast<const T*>(logits.data_ptr());
    const A* pl = static_cast<const A*>(lse.data_ptr());
    T* pg = static_cast<T*>(grad_logits.data_ptr());
    const A g = *static_cast<const A*>(grad_loss.data_ptr()) / static_cast<A>(count);
    const A on_target = static_cast<A>(1.0 - smoothing);
    const A uniform = static_cast<A>(smoothing / static_cast<double>(c));
#pragma omp parallel for schedule(static) if (n * c > 16384)
    for (int64_t r = 0; r < n; ++r) {
      T* gr = pg + r * c;
      if (pt[r] == ignore_index) {
        for (int64_t i = 0; i < c; ++i) gr[i] = cpu::store_as<T>(A(0));
        continue;
      }
      const T* z = pz + r * c;
      const A l = pl[r];
      for (int64_t i = 0; i < c; ++i) {
        const A p = std::exp(cpu::load_as<A>(z[i]) - l);
        gr[i] = cpu::store_as<T>(g * (p - uniform - (i == pt[r] ? on_target : A(0))));
      }
    }
  });
}

}  // namespace

KOLO_REGISTER_KERNEL(cross_entropy_fwd, CPU, cpu_cross_entropy_fwd);
KOLO_REGISTER_KERNEL(cross_entropy_bwd, CPU, cpu_cross_entropy_bwd);

}  // namespace kolo
