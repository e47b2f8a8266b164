// layer_norm over the last dimension with optional affine parameters; saves mean and 1/std per row so the
// backward needs no second pass over the statistics.
#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops/kernels/nn.h"
#include "core/ops/nn.h"

namespace kolo {

namespace {

void check_param(const Tensor& p, const Tensor& x, const char* what) {
  if (!p.defined()) return;
  KOLO_CHECK(p.dim() == 1 && p.size(0) == x.size(-1), "layer_norm: ", what, " ", p.describe(),
             " does not match the last dimension of ", x.describe());
  KOLO_CHECK(p.dtype() == x.dtype(), "layer_norm: ", what, " ", p.describe(), " has a different dtype than ",
             x.describe());
  KOLO_CHECK(p.device() == x.device(), "layer_norm: ", what, " ", p.describe(), " is on another device than ",
             x.describe());
}

}  // namespace

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  KOLO_CHECK(x.dim() >= 1 && x.size(-1) > 0, "layer_norm: needs a non-empty last dimension, got ", x.describe());
  KOLO_CHECK(is_floating(x.dtype()), "layer_norm: needs a floating tensor, got ", x.describe());
  KOLO_CHECK(eps >= 0.0, "layer_norm: eps ", eps, " must be >= 0");
  check_param(weight, x, "weight");
  check_param(bias, x, "bias");
  Tensor xc, wc, bc;
  {
    NoGradGuard ng;
    xc = x.contiguous();
    if (weight.defined()) wc = weight.contiguous();
    if (bias.defined()) bc = bias.contiguous();
  }
  const int64_t rows = x.numel() / x.size(-1);
  const DType st = nn_stats_dtype(x.dtype());
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mu = Tensor::empty({rows}, st, x.device()), rs = Tensor::empty({rows}, st, x.device());
  layer_norm_fwd_kernel()(x.device())(xc, wc, bc, eps, y, mu, rs);
  Tensor xd = xc.detach(), wd = wc.defined() ? wc.detach() : Tensor();
  const bool need_w = weight.defined() && weight.requires_grad();
  const bool need_b = bias.defined() && bias.requires_grad();
  std::vector<Tensor> inputs{x};
  if (weight.defined()) inputs.push_back(weight);
  if (bias.defined()) inputs.push_back(bias);
  const bool has_w = weight.defined(), has_b = bias.defined();
  // The weight's and bias's gradients go straight into their slots where the engine offers them.
  const size_t bias_input = has_w ? 2 : 1;
  std::vector<size_t> params;
  if (has_w) params.push_back(1);
  if (has_b) params.push_back(bias_input);
  autograd::record_into("layer_norm", inputs, {&y}, {}, params,
                        [xd, wd, mu, rs, need_w, need_b, has_w, has_b, bias_input](
                            const std::vector<Tensor>& g, const std::vector<Tensor>& into) -> std::vector<Tensor> {
                     Tensor gy = g[0].contiguous();
                     Tensor gx = Tensor::empty(xd.shape(), xd.dtype(), xd.device());
                     const int64_t d = xd.size(-1);
                     // `into` holds an entry per recorded input: none for an absent weight or bias.
                     Tensor gw =
                         has_w ? autograd::write_target(need_w, into[1], {d}, xd.dtype(), xd.device()) : Tensor();
                     Tensor gb = has_b ? autograd::write_target(need_b, into[bias_input], {d}, xd.dtype(), xd.device())
                                       : Tensor();
                     layer_norm_bwd_kernel()(xd.device())(gy, xd, wd, mu, rs, gx, gw, gb);
                     std::vector<Tensor> out{gx};
                     if (has_w) out.push_back(gw);
                     if (has_b) out.push_back(gb);
                     return out;
                   });
  return y;
}

}  // namespace kolo
