// dropout: inverted dropout whose mask is a function of (generator seed, reserved counters), so a run is
// reproducible and the backward regenerates the mask instead of storing it.
#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops/elementwise.h"
#include "core/ops/kernels/nn.h"
#include "core/ops/nn.h"

namespace kolo {

namespace {

// The generator counters of one dropout call.
struct Counters {
  uint64_t seed = 0, base = 0;
};

// y = [residual +] dropout([relu](x)) through the kernel slot, with counters reserved from `gen` into `c`.
Tensor apply(const Tensor& x, const Tensor& residual, bool relu, double p, Generator& gen, Counters& c) {
  Tensor xc, rc;
  {
    NoGradGuard ng;
    xc = x.contiguous();
    if (residual.defined()) rc = residual.contiguous();
  }
  c = {gen.seed(), gen.reserve(static_cast<uint64_t>(x.numel()))};
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  dropout_apply_kernel()(x.device())(xc, rc, relu, p, c.seed, c.base, y);
  return y;
}

// The backward of dropout: the same mask (same counters) applied to the gradient.
Tensor dropout_grad(const Tensor& g, double p, const Counters& c) {
  Tensor gc = g.contiguous();
  Tensor gx = Tensor::empty(gc.shape(), gc.dtype(), gc.device());
  dropout_apply_kernel()(gc.device())(gc, Tensor(), false, p, c.seed, c.base, gx);
  return gx;
}

void check_args(const char* op, const Tensor& x, double p) {
  KOLO_CHECK(p >= 0.0 && p <= 1.0, op, ": probability ", p, " outside [0, 1] for ", x.describe());
  KOLO_CHECK(is_floating(x.dtype()), op, ": needs a floating tensor, got ", x.describe());
}

}  // namespace

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  check_args("dropout", x, p);
  if (!training || p == 0.0) return x;
  Counters c;
  Tensor y = apply(x, Tensor(), false, p, gen, c);
  autograd::record("dropout", {x}, {&y}, [p, c](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {dropout_grad(g[0], p, c)};
  });
  return y;
}

Tensor relu_dropout(const Tensor& x, double p, bool training, Generator& gen) {
  check_args("relu_dropout", x, p);
  if (!training || p == 0.0) return relu(x);
  Counters c;
  Tensor y = apply(x, Tensor(), true, p, gen, c);
  Tensor yd = y.detach();
  autograd::record("relu_dropout", {x}, {&y}, [p, yd](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    Tensor gc = g[0].contiguous();
    Tensor gx = Tensor::empty(gc.shape(), gc.dtype(), gc.device());
    relu_dropout_backward_kernel()(gc.device())(gc, yd, p, gx);
    return {gx};
  });
  return y;
}

Tensor dropout_add(const Tensor& residual, const Tensor& x, double p, bool training, Generator& gen) {
  check_args("dropout_add", x, p);
  if (!training || p == 0.0) return add(residual, x);
  if (residual.shape() != x.shape() || residual.dtype() != x.dtype() || residual.device() != x.device() ||
      residual.is_sparse())
    return add(residual, dropout(x, p, training, gen));
  Counters c;
  Tensor y = apply(x, residual, false, p, gen, c);
  autograd::record("dropout_add", {residual, x}, {&y}, [p, c](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {g[0], dropout_grad(g[0], p, c)};
  });
  return y;
}

}  // namespace kolo
