// softmax and log_softmax along any dimension: the dimension is moved last for the row kernel, and the
// backward reuses the saved output (no recomputation of the exponentials).
#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops/kernels/nn.h"
#include "core/ops/nn.h"

namespace kolo {

namespace {

// x with dimension d swapped with the last one, contiguous (a swap is its own inverse).
Tensor to_last(const Tensor& x, int64_t d) {
  NoGradGuard ng;
  return (d == x.dim() - 1 ? x : x.transpose(d, -1)).contiguous();
}

Tensor softmax_impl(const Tensor& x, int64_t dim, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  KOLO_CHECK(x.dim() >= 1, name, ": needs at least one dimension, got ", x.describe());
  KOLO_CHECK(is_floating(x.dtype()), name, ": needs a floating tensor, got ", x.describe());
  const int64_t d = wrap_dim(dim, x.dim(), name);
  Tensor xm = to_last(x, d);
  Tensor y = Tensor::empty(xm.shape(), x.dtype(), x.device());
  softmax_fwd_kernel()(x.device())(xm, y, log);
  Tensor out = to_last(y, d);
  Tensor yd = y.detach();
  autograd::record(name, {x}, {&out}, [yd, d, log](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    Tensor gm = to_last(g[0], d);
    Tensor gx = Tensor::empty(yd.shape(), yd.dtype(), yd.device());
    softmax_bwd_kernel()(yd.device())(gm, yd, gx, log);
    return {to_last(gx, d)};
  });
  return out;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true); }

}  // namespace kolo
