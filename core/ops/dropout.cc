// dropout: inverted dropout whose mask is a function of (generator seed, reserved counters), so a run is
// reproducible and the backward regenerates the mask instead of storing it.
#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops/kernels/nn.h"
#include "core/ops/nn.h"

namespace kolo {

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  KOLO_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability ", p, " outside [0, 1] for ", x.describe());
  KOLO_CHECK(is_floating(x.dtype()), "dropout: needs a floating tensor, got ", x.describe());
  if (!training || p == 0.0) return x;
  Tensor xc;
  {
    NoGradGuard ng;
    xc = x.contiguous();
  }
  const uint64_t seed = gen.seed();
  const uint64_t base = gen.reserve(static_cast<uint64_t>(x.numel()));
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  dropout_apply_kernel()(x.device())(xc, p, seed, base, y);
  autograd::record("dropout", {x}, {&y}, [p, seed, base](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    Tensor gc = g[0].contiguous();
    Tensor gx = Tensor::empty(gc.shape(), gc.dtype(), gc.device());
    dropout_apply_kernel()(gc.device())(gc, p, seed, base, gx);
    return {gx};
  });
  return y;
}

}  // namespace kolo
