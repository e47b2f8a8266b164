// conv2d, batch norm and pooling as autograd ops: validate shapes, run the forward kernel, record the
// backward (which calls the backward kernels) next to it.
#include "core/ops/conv.h"

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops/kernels/conv.h"
#include "core/ops/reduce.h"

namespace kolo {

namespace {

// Output extent of a sliding window; throws naming `op` when the (dilated) window does not fit.
int64_t out_extent(const char* op, const char* axis, int64_t in, int64_t k, int64_t s, int64_t p, int64_t d,
                   const Tensor& x, const Tensor* w) {
  const int64_t span = d * (k - 1) + 1;
  KOLO_CHECK(span <= in + 2 * p, op, ": kernel ", axis, " extent ", span, " is larger than the padded input (",
             in, " + 2*", p, ") for input ", x.describe(), w ? " and weight " + w->describe() : std::string());
  return (in + 2 * p - span) / s + 1;
}

void check_pair(const char* op, const char* what, const std::array<int64_t, 2>& v, int64_t min) {
  KOLO_CHECK(v[0] >= min && v[1] >= min, op, ": ", what, " must be >= ", min, ", got [", v[0], ", ", v[1], "]");
}

ConvGeometry conv_geometry(const Tensor& x, const Tensor& w, const Conv2dOptions& opt) {
  KOLO_CHECK(x.dim() == 4, "conv2d: input must be 4-D (", opt.channels_last ? "NHWC" : "NCHW", "), got ",
             x.describe());
  KOLO_CHECK(w.dim() == 4, "conv2d: weight must be 4-D (", opt.channels_last ? "OHWI" : "OIHW", "), got ",
             w.describe());
  KOLO_CHECK(is_floating(x.dtype()) && x.dtype() == w.dtype(), "conv2d: input ", x.describe(), " and weight ",
             w.describe(), " must share a floating dtype");
  KOLO_CHECK(x.device() == w.device(), "conv2d: devices differ: ", x.describe(), " and ", w.describe());
  check_pair("conv2d", "stride", opt.stride, 1);
  check_pair("conv2d", "dilation", opt.dilation, 1);
  check_pair("conv2d", "padding", opt.padding, 0);
  ConvGeometry g;
  g.channels_last = opt.channels_last;
  g.stride = opt.stride;
  g.padding = opt.padding;
  g.dilation = opt.dilation;
  g.groups = opt.groups;
  g.n = x.size(0);
  g.c = opt.channels_last ? x.size(3) : x.size(1);
  g.h = opt.channels_last ? x.size(1) : x.size(2);
  g.w = opt.channels_last ? x.size(2) : x.size(3);
  g.o = w.size(0);
  g.kh = opt.channels_last ? w.size(1) : w.size(2);
  g.kw = opt.channels_last ? w.size(2) : w.size(3);
  const int64_t wc = opt.channels_last ? w.size(3) : w.size(1);
  KOLO_CHECK(g.groups >= 1 && g.c % g.groups == 0 && g.o % g.groups == 0, "conv2d: groups ", g.groups,
             " must divide input channels ", g.c, " and output channels ", g.o, " (input ", x.describe(),
             ", weight ", w.describe(), ")");
  KOLO_CHECK(wc * g.groups == g.c, "conv2d: input ", x.describe(), " has ", g.c, " channels but weight ",
             w.describe(), " expects ", wc, " per group x ", g.groups, " groups");
  KOLO_CHECK(g.kh >= 1 && g.kw >= 1 && g.n >= 1 && g.c >= 1, "conv2d: empty input ", x.describe(),
             " or weight ", w.describe());
  g.oh = out_extent("conv2d", "height", g.h, g.kh, g.stride[0], g.padding[0], g.dilation[0], x, &w);
  g.ow = out_extent("conv2d", "width", g.w, g.kw, g.stride[1], g.padding[1], g.dilation[1], x, &w);
  return g;
}

Shape activation_shape(int64_t n, int64_t c, int64_t h, int64_t w, bool channels_last) {
  return channels_last ? Shape{n, h, w, c} : Shape{n, c, h, w};
}

PoolGeometry pool_geometry(const char* op, const Tensor& x, const Pool2dOptions& opt) {
  KOLO_CHECK(x.dim() == 4, op, ": input must be 4-D (", opt.channels_last ? "NHWC" : "NCHW", "), got ",
             x.describe());
  KOLO_CHECK(is_floating(x.dtype()), op, ": input must be floating, got ", x.describe());
  check_pair(op, "kernel", opt.kernel, 1);
  check_pair(op, "stride", opt.stride, 1);
  check_pair(op, "padding", opt.padding, 0);
  // As PyTorch: a window must always see at least one real element.
  KOLO_CHECK(2 * opt.padding[0] <= opt.kernel[0] && 2 * opt.padding[1] <= opt.kernel[1], op, ": padding [",
             opt.padding[0], ", ", opt.padding[1], "] must be at most half the kernel [", opt.kernel[0], ", ",
             opt.kernel[1], "] for input ", x.describe());
  PoolGeometry g;
  g.kernel = opt.kernel;
  g.stride = opt.stride;
  g.padding = opt.padding;
  g.channels_last = opt.channels_last;
  g.n = x.size(0);
  g.c = opt.channels_last ? x.size(3) : x.size(1);
  g.h = opt.channels_last ? x.size(1) : x.size(2);
  g.w = opt.channels_last ? x.size(2) : x.size(3);
  g.oh = out_extent(op, "height", g.h, g.kernel[0], g.stride[0], g.padding[0], 1, x, nullptr);
  g.ow = out_extent(op, "width", g.w, g.kernel[1], g.stride[1], g.padding[1], 1, x, nullptr);
  return g;
}

Tensor pool2d(PoolKind kind, const char* op, const Tensor& x_in, const Pool2dOptions& opt) {
  const PoolGeometry g = pool_geometry(op, x_in, opt);
  const Tensor x = x_in.detach().contiguous();
  Tensor y = Tensor::empty(activation_shape(g.n, g.c, g.oh, g.ow, g.channels_last), x.dtype(), x.device());
  Tensor workspace;
  const bool need_grad = autograd::any_requires_grad({x_in});
  pool2d_fwd_kernel()(x.device())(kind, g, x, y, need_grad && kind == PoolKind::Max, workspace);
  Tensor yd = y.detach();
  autograd::record(op, {x_in}, {&y}, [kind, g, x, yd, workspace](const std::vector<Tensor>& gr) {
    Tensor dy = gr[0].contiguous();
    Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
    pool2d_bwd_kernel()(x.device())(kind, g, x, yd, dy, workspace, dx);
    return std::vector<Tensor>{dx};
  });
  return y;
}

}  // namespace

Tensor conv2d(const Tensor& x_in, const Tensor& w_in, const Tensor& bias_in, const Conv2dOptions& opt) {
  const ConvGeometry g = conv_geometry(x_in, w_in, opt);
  if (bias_in.defined()) {
    KOLO_CHECK(bias_in.dim() == 1 && bias_in.size(0) == g.o && bias_in.dtype() == x_in.dtype() &&
                   bias_in.device() == x_in.device(),
               "conv2d: bias ", bias_in.describe(), " must be [", g.o, "] of the input's dtype and device (input ",
               x_in.describe(), ", weight ", w_in.describe(), ")");
  }
  const Tensor x = x_in.detach().contiguous();
  const Tensor w = w_in.detach().contiguous();
  const Tensor b = bias_in.defined() ? bias_in.detach().contiguous() : Tensor();
  Tensor y = Tensor::empty(activation_shape(g.n, g.o, g.oh, g.ow, g.channels_last), x.dtype(), x.device());
  conv2d_fwd_kernel()(x.device())(g, x, w, b, y);
  const bool gx = x_in.requires_grad(), gw = w_in.requires_grad();
  const bool gb = bias_in.defined() && bias_in.requires_grad();
  // The input's gradient is summed into an earlier one where there is one (a ResNet block input also feeds
  // the shortcut): the data-gradient convolution adds instead of a separate pass over both.
  autograd::record_into(
      "conv2d", {x_in, w_in, bias_in}, {&y}, {0}, {1, 2},
      [g, x, w, gx, gw, gb](const std::vector<Tensor>& gr, const std::vector<Tensor>& into) -> std::vector<Tensor> {
        Tensor dy = gr[0].contiguous();
        Tensor dx, dw, db;
        if (gx) {
          const bool sum = into[0].defined();
          dx = sum ? into[0] : Tensor::empty(x.shape(), x.dtype(), x.device());
          conv2d_bwd_data_kernel()(x.device())(g, dy, w, dx, sum);
        }
        if (gw || gb) {
          // Written straight into the parameters' gradient slots where the engine offers them.
          Tensor dw_buf = autograd::write_target(true, into[1], w.shape(), w.dtype(), w.device());
          db = autograd::write_target(gb, into[2], {g.o}, x.dtype(), x.device());
          conv2d_bwd_weights_kernel()(x.device())(g, x, dy, dw_buf, db);
          if (gw) dw = dw_buf;
        }
        return {dx, dw, db};
      });
  return y;
}

void check_batch_norm_args(const char* op, const Tensor& x_in, const Tensor& weight, const Tensor& bias,
                           const Tensor& running_mean, const Tensor& running_var, bool training,
                           bool channels_last) {
  KOLO_CHECK(x_in.dim() >= 2, op, ": input must have at least 2 dims, got ", x_in.describe());
  KOLO_CHECK(is_floating(x_in.dtype()), op, ": input must be floating, got ", x_in.describe());
  const int64_t cdim = channels_last ? x_in.dim() - 1 : 1;
  const int64_t c = x_in.size(cdim);
  KOLO_CHECK(c > 0, op, ": input has no channels: ", x_in.describe());
  for (const Tensor* p : {&weight, &bias}) {
    if (!p->defined()) continue;
    KOLO_CHECK(p->dim() == 1 && p->size(0) == c && p->dtype() == x_in.dtype() && p->device() == x_in.device(),
               op, ": affine parameter ", p->describe(), " must be [", c, "] of the input's dtype (input ",
               x_in.describe(), ")");
  }
  for (const Tensor* p : {&running_mean, &running_var}) {
    if (!p->defined()) continue;
    KOLO_CHECK(p->dim() == 1 && p->size(0) == c && p->is_contiguous() && is_floating(p->dtype()) &&
                   p->device() == x_in.device(),
               op, ": running statistic ", p->describe(), " must be a contiguous floating [", c, "] (input ",
               x_in.describe(), ")");
  }
  KOLO_CHECK(training || (running_mean.defined() && running_var.defined()), op,
             ": eval mode needs running_mean and running_var (input ", x_in.describe(), ")");
  KOLO_CHECK(!training || x_in.numel() / c > 1, op, ": training needs more than one value per channel, got ",
             x_in.describe());
}

Tensor batch_norm(const Tensor& x_in, const Tensor& weight, const Tensor& bias, Tensor& running_mean,
                  Tensor& running_var, bool training, double momentum, double eps, bool channels_last) {
  check_batch_norm_args("batch_norm", x_in, weight, bias, running_mean, running_var, training, channels_last);
  const int64_t c = x_in.size(channels_last ? x_in.dim() - 1 : 1);
  const Tensor x = x_in.detach().contiguous();
  const Tensor w = weight.defined() ? weight.detach().contiguous() : Tensor();
  const Tensor b = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  const DType stat_dtype = x.dtype() == DType::F64 ? DType::F64 : DType::F32;
  Tensor save_mean = Tensor::empty({c}, stat_dtype, x.device());
  Tensor save_invstd = Tensor::empty({c}, stat_dtype, x.device());
  batch_norm_fwd_kernel()(x.device())(x, w, b, running_mean, running_var, training, momentum, eps, channels_last,
                                      y, save_mean, save_invstd);
  const bool gw = weight.defined() && weight.requires_grad();
  const bool gb = bias.defined() && bias.requires_grad();
  const bool gx = x_in.requires_grad();
  autograd::record_into("batch_norm", {x_in, weight, bias}, {&y}, {}, {1, 2},
                        [x, w, save_mean, save_invstd, training, channels_last, gx, gw, gb](
                            const std::vector<Tensor>& gr, const std::vector<Tensor>& into) -> std::vector<Tensor> {
                     Tensor dy = gr[0].contiguous();
                     const Shape cs{save_mean.size(0)};
                     Tensor dx = gx ? Tensor::empty(x.shape(), x.dtype(), x.device()) : Tensor();
                     Tensor dw = autograd::write_target(gw, into[1], cs, x.dtype(), x.device());
                     Tensor db = autograd::write_target(gb, into[2], cs, x.dtype(), x.device());
                     batch_norm_bwd_kernel()(x.device())(dy, x, w, save_mean, save_invstd, training, channels_last,
                                                         dx, dw, db);
                     return {dx, dw, db};
                   });
  return y;
}

Tensor max_pool2d(const Tensor& x, const Pool2dOptions& opt) { return pool2d(PoolKind::Max, "max_pool2d", x, opt); }

Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& opt) { return pool2d(PoolKind::Avg, "avg_pool2d", x, opt); }

Tensor global_avg_pool2d(const Tensor& x, bool channels_last) {
  KOLO_CHECK(x.dim() == 4, "global_avg_pool2d: input must be 4-D (", channels_last ? "NHWC" : "NCHW", "), got ",
             x.describe());
  return channels_last ? mean(x, {1, 2}) : mean(x, {2, 3});
}

}  // namespace kolo
