// Fused batch norm (+ residual) + ReLU as an autograd op, with the unfused composite where a device has no
// fused kernel.
#include "core/ops/batch_norm_act.h"

#include <array>

#include "core/autograd/node.h"
#include "core/ops/conv.h"
#include "core/ops/elementwise.h"
#include "core/ops/kernels/batch_norm_act.h"

namespace kolo {

namespace {

Tensor fused(const char* op, const Tensor& x_in, const Tensor& residual_in, const Tensor& weight,
             const Tensor& bias, Tensor& running_mean, Tensor& running_var, bool training, double momentum,
             double eps, bool channels_last) {
  check_batch_norm_args(op, x_in, weight, bias, running_mean, running_var, training, channels_last);
  if (residual_in.defined()) {
    KOLO_CHECK(residual_in.shape() == x_in.shape() && residual_in.dtype() == x_in.dtype() &&
                   residual_in.device() == x_in.device(),
               op, ": residual ", residual_in.describe(), " must match the input ", x_in.describe());
  }
  const Device dev = x_in.device();
  if (!batch_norm_act_fwd_kernel().has(dev.type) || !batch_norm_act_bwd_kernel().has(dev.type)) {
    Tensor y = batch_norm(x_in, weight, bias, running_mean, running_var, training, momentum, eps, channels_last);
    return relu(residual_in.defined() ? add(y, residual_in) : y);
  }
  const Tensor x = x_in.detach().contiguous();
  const Tensor r = residual_in.defined() ? residual_in.detach().contiguous() : Tensor();
  const Tensor w = weight.defined() ? weight.detach().contiguous() : Tensor();
  const Tensor b = bias.defined() ? bias.detach().contiguous() : Tensor();
  const int64_t c = x.size(channels_last ? x.dim() - 1 : 1);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), dev);
  const DType stat_dtype = x.dtype() == DType::F64 ? DType::F64 : DType::F32;
  Tensor save_mean = Tensor::empty({c}, stat_dtype, dev);
  Tensor save_invstd = Tensor::empty({c}, stat_dtype, dev);
  batch_norm_act_fwd_kernel()(dev)(x, w, b, r, running_mean, running_var, training, momentum, eps, channels_last,
                                   y, save_mean, save_invstd);
  const bool gx = x_in.requires_grad();
  const bool gw = weight.defined() && weight.requires_grad();
  const bool gb = bias.defined() && bias.requires_grad();
  const bool gr = residual_in.defined() && residual_in.requires_grad();
  // The output, not the ReLU input, is saved: it gives the mask, and the next layer keeps it alive anyway.
  const Tensor yd = y.detach();
  const bool with_residual = residual_in.defined();
  // The affine parameters' gradients go straight into their slots where the engine offers them.
  autograd::record_into(op, {x_in, weight, bias, residual_in}, {&y}, {}, {1, 2},
                        [x, w, b, yd, save_mean, save_invstd, training, channels_last, with_residual, gx, gw, gb, gr](
                            const std::vector<Tensor>& grads, const std::vector<Tensor>& into) -> std::vector<Tensor> {
                     Tensor dy = grads[0].contiguous();
                     const Shape cs{save_mean.size(0)};
                     Tensor dx = gx ? Tensor::empty(x.shape(), x.dtype(), x.device()) : Tensor();
                     Tensor dw = autograd::write_target(gw, into[1], cs, x.dtype(), x.device());
                     Tensor db = autograd::write_target(gb, into[2], cs, x.dtype(), x.device());
                     Tensor dr = gr ? Tensor::empty(x.shape(), x.dtype(), x.device()) : Tensor();
                     batch_norm_act_bwd_kernel()(x.device())(dy, yd, x, w, b, save_mean, save_invstd, training,
                                                             channels_last, with_residual, dx, dw, db, dr);
                     return {dx, dw, db, dr};
                   });
  return y;
}

}  // namespace

Tensor batch_norm_dual_add_relu(const Tensor& x_in, const BatchNormParams& p, const Tensor& r_in,
                                const BatchNormParams& rp, bool training, double momentum, double eps,
                                bool channels_last) {
  const char* op = "batch_norm_dual_add_relu";
  KOLO_CHECK(p.running_mean && p.running_var && rp.running_mean && rp.running_var, op,
             ": running statistics must be given (tensors, possibly undefined)");
  check_batch_norm_args(op, x_in, p.weight, p.bias, *p.running_mean, *p.running_var, training, channels_last);
  check_batch_norm_args(op, r_in, rp.weight, rp.bias, *rp.running_mean, *rp.running_var, training, channels_last);
  KOLO_CHECK(r_in.shape() == x_in.shape() && r_in.dtype() == x_in.dtype() && r_in.device() == x_in.device(), op,
             ": shortcut input ", r_in.describe(), " must match the input ", x_in.describe());
  const Device dev = x_in.device();
  auto composite = [&] {
    Tensor shortcut = batch_norm(r_in, rp.weight, rp.bias, *rp.running_mean, *rp.running_var, training, momentum,
                                 eps, channels_last);
    return batch_norm_add_relu(x_in, shortcut, p.weight, p.bias, *p.running_mean, *p.running_var, training,
                               momentum, eps, channels_last);
  };
  if (!training || !batch_norm_dual_act_fwd_kernel().has(dev.type) || !batch_norm_dual_act_bwd_kernel().has(dev.type))
    return composite();
  auto plain = [](const Tensor& t) { return t.defined() ? t.detach().contiguous() : Tensor(); };
  const Tensor x = plain(x_in), r = plain(r_in), w = plain(p.weight), b = plain(p.bias), rw = plain(rp.weight),
               rb = plain(rp.bias);
  const int64_t c = x.size(channels_last ? x.dim() - 1 : 1);
  const DType st = x.dtype() == DType::F64 ? DType::F64 : DType::F32;
  Tensor y = Tensor::empty(x.shape(), x.dtype(), dev);
  Tensor mean = Tensor::empty({c}, st, dev), invstd = Tensor::empty({c}, st, dev);
  Tensor r_mean = Tensor::empty({c}, st, dev), r_invstd = Tensor::empty({c}, st, dev);
  if (!batch_norm_dual_act_fwd_kernel()(dev)(x, w, b, *p.running_mean, *p.running_var, r, rw, rb, *rp.running_mean,
                                            *rp.running_var, momentum, eps, channels_last, y, mean, invstd, r_mean,
                                            r_invstd))
    return composite();
  const std::array<bool, 6> need{x_in.requires_grad(),
                                 p.weight.defined() && p.weight.requires_grad(),
                                 p.bias.defined() && p.bias.requires_grad(),
                                 r_in.requires_grad(),
                                 rp.weight.defined() && rp.weight.requires_grad(),
                                 rp.bias.defined() && rp.bias.requires_grad()};
  autograd::record_into(op, {x_in, p.weight, p.bias, r_in, rp.weight, rp.bias}, {&y}, {}, {1, 2, 4, 5},
                        [x, w, b, mean, invstd, r, rw, rb, r_mean, r_invstd, channels_last, need](
                            const std::vector<Tensor>& grads, const std::vector<Tensor>& into) -> std::vector<Tensor> {
                     Tensor dy = grads[0].contiguous();
                     const Shape cs{mean.size(0)};
                     // Input i's gradient: its slot where the engine offers one (parameters), else a new tensor.
                     auto out = [&](size_t i, const Shape& shape) {
                       return autograd::write_target(need[i], into[i], shape, x.dtype(), x.device());
                     };
                     Tensor dx = out(0, x.shape()), dw = out(1, cs), db = out(2, cs);
                     Tensor dr = out(3, x.shape()), drw = out(4, cs), drb = out(5, cs);
                     batch_norm_dual_act_bwd_kernel()(x.device())(dy, x, w, b, mean, invstd, r, rw, rb, r_mean,
                                                                  r_invstd, channels_last, dx, dw, db, dr, drw, drb);
                     return {dx, dw, db, dr, drw, drb};
                   });
  return y;
}

Tensor batch_norm_relu(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& running_mean,
                       Tensor& running_var, bool training, double momentum, double eps, bool channels_last) {
  return fused("batch_norm_relu", x, Tensor(), weight, bias, running_mean, running_var, training, momentum, eps,
               channels_last);
}

Tensor batch_norm_add_relu(const Tensor& x, const Tensor& residual, const Tensor& weight, const Tensor& bias,
                           Tensor& running_mean, Tensor& running_var, bool training, double momentum, double eps,
                           bool channels_last) {
  KOLO_CHECK(residual.defined(), "batch_norm_add_relu: residual is undefined (input ", x.describe(), ")");
  return fused("batch_norm_add_relu", x, residual, weight, bias, running_mean, running_var, training, momentum, eps,
               channels_last);
}

}  // namespace kolo
