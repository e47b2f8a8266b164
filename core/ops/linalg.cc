// matmul/linear: reshape to 3-D batched GEMMs, gradients as two more GEMMs; linear with bias through the
// device's fused linear kernels where it has them (bias in the GEMM epilogue), else matmul + add.
#include "core/ops/linalg.h"

#include <array>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops/elementwise.h"
#include "core/ops/kernels/elementwise.h"
#include "core/ops/kernels/linalg.h"
#include "core/ops/reduce.h"

namespace kolo {

namespace {

// Presents a [..., R, C] operand as 3-D [B, R, C] with the given broadcast batch shape. Returns the view
// and whether its last two dims are stored transposed (unit stride on R).
std::pair<Tensor, bool> as_batched(const Tensor& t, const Shape& batch) {
  Shape full = batch;
  full.push_back(t.size(-2));
  full.push_back(t.size(-1));
  Tensor e = t.shape() == full ? t : t.expand(full);
  const int64_t nb = shape_numel(batch);
  const int64_t r = t.size(-2), c = t.size(-1);
  const Shape& st = e.strides();
  const int64_t nd = e.dim();
  const int64_t sr = st[nd - 2], sc = st[nd - 1];
  const bool row_major = sc == 1 || c == 1;
  const bool col_major = !row_major && (sr == 1 || r == 1);
  // A single batch stride must describe the batch dims: true for contiguous or fully broadcast batches.
  int64_t bstride = 0;
  bool uniform = true;
  {
    int64_t expect = -1;
    for (int64_t i = nd - 3; i >= 0; --i) {
      if (e.shape()[i] == 1) continue;
      if (expect < 0) {
        bstride = st[i];
        expect = st[i] * e.shape()[i];
      } else if (st[i] != expect || (bstride == 0) != (st[i] == 0)) {
        uniform = false;
      } else {
        expect = st[i] * e.shape()[i];
      }
      if (st[i] == 0 && bstride != 0) uniform = false;
    }
  }
  if ((row_major || col_major) && uniform) {
    const int64_t ld = row_major ? (r > 1 ? sr : c) : (c > 1 ? sc : r);
    if ((row_major && ld >= c) || (col_major && ld >= r)) {
      Tensor v = e.as_strided({nb, r, c}, {bstride, row_major ? ld : 1, row_major ? 1 : ld}, e.offset());
      return {v, col_major};
    }
  }
  Tensor c3 = e.contiguous().as_strided({nb, r, c}, {r * c, c, 1}, 0);
  return {c3, false};
}

Tensor matmul_raw(const Tensor& a, const Tensor& b) {
  const Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  const Shape batch = broadcast_shapes(ba, bb, "matmul");
  auto [a3, ta] = as_batched(a, batch);
  auto [b3, tb] = as_batched(b, batch);
  const int64_t m = a.size(-2), n = b.size(-1);
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
  Tensor c3 = out.as_strided({shape_numel(batch), m, n}, {m * n, n, 1}, 0);
  // A transposed operand is passed as its underlying row-major matrix with the trans flag set.
  Tensor a_arg = ta ? a3.transpose(1, 2) : a3;
  Tensor b_arg = tb ? b3.transpose(1, 2) : b3;
  gemm_kernel()(a.device())(a_arg, b_arg, c3, ta, tb, 1.0, 0.0);
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  KOLO_CHECK(a.dim() >= 2 && b.dim() >= 2, "matmul: operands must be at least 2-D, got ", a.describe(), " and ",
             b.describe());
  KOLO_CHECK(a.size(-1) == b.size(-2), "matmul: inner dimensions differ: ", a.describe(), " @ ", b.describe());
  KOLO_CHECK(a.dtype() == b.dtype() && is_floating(a.dtype()), "matmul: dtypes ", a.describe(), " and ",
             b.describe(), " must match and be floating");
  KOLO_CHECK(a.device() == b.device(), "matmul: devices differ: ", a.describe(), " and ", b.describe());
  Tensor out;
  {
    NoGradGuard ng;
    out = matmul_raw(a, b);
  }
  Tensor ad = a.detach(), bd = b.detach();
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  autograd::record("matmul", {a, b}, {&out}, [ad, bd, ga, gb](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    Tensor g_a, g_b;
    if (ga) g_a = sum_to_shape(matmul_raw(g[0], bd.transpose(-1, -2)), ad.shape());
    if (gb) g_b = sum_to_shape(matmul_raw(ad.transpose(-1, -2), g[0]), bd.shape());
    return {g_a, g_b};
  });
  return out;
}

namespace {

bool has_fused_linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  const DeviceType dev = x.device().type;
  return bias.defined() && linear_fwd_kernel().has(dev) && linear_bwd_kernel().has(dev) && is_floating(x.dtype()) &&
         w.dtype() == x.dtype() && bias.dtype() == x.dtype() && w.device() == x.device() &&
         bias.device() == x.device();
}

// The [N, in] gradient buffer of x [..., in] for a fused backward: a view of `into` when the engine offered an
// earlier gradient of x to sum into (then *accumulate is set), else a new one.
Tensor input_grad_2d(const Tensor& into, DType dtype, Device dev, int64_t n, int64_t in, bool* accumulate) {
  *accumulate = into.defined();
  return *accumulate ? into.view({n, in}) : Tensor::empty({n, in}, dtype, dev);
}

// x [..., in] -> [N, out] through linear_fwd/linear_bwd, recorded as one node with inputs x, w, bias (x
// itself, not a 2-D view of it, so that x's gradient can be summed into an earlier one: the GEMM adds with
// beta = 1 where x also feeds other layers or a residual). With `relu` the output is relu(...): the backward
// masks the gradient with y > 0 (which is x > 0) first.
Tensor fused_linear(const Tensor& x, const Tensor& w, const Tensor& bias, bool relu) {
  const Tensor xd = x.detach().reshape({-1, w.size(1)}), wd = w.detach(), bd = bias.detach().contiguous();
  Tensor y = Tensor::empty({xd.size(0), w.size(0)}, x.dtype(), x.device());
  linear_fwd_kernel()(x.device())(xd, wd, bd, relu, y);
  const bool gx = x.requires_grad(), gw = w.requires_grad(), gb = bias.requires_grad();
  const Tensor yd = relu ? y.detach() : Tensor();
  autograd::record_into(
      relu ? "linear_relu" : "linear", {x, w, bias}, {&y}, {0}, {1, 2},
      [xd, wd, yd, gx, gw, gb, x_shape = x.shape()](const std::vector<Tensor>& g,
                                                     const std::vector<Tensor>& into) -> std::vector<Tensor> {
        const Device dev = xd.device();
        Tensor gy = g[0].detach();
        if (yd.defined()) {
          Tensor masked = Tensor::empty(yd.shape(), yd.dtype(), dev);
          unary_backward_kernel()(dev)(UnaryOp::Relu, gy.contiguous(), yd, yd, masked);
          gy = masked;
        }
        bool accumulate = false;
        Tensor dx = gx ? input_grad_2d(into[0], xd.dtype(), dev, xd.size(0), xd.size(1), &accumulate)
                       : Tensor();
        // Parameter gradients go straight into their slots where the engine offers them.
        Tensor dw = autograd::write_target(gw, into[1], wd.shape(), wd.dtype(), dev);
        Tensor db = autograd::write_target(gb, into[2], {wd.size(0)}, wd.dtype(), dev);
        linear_bwd_kernel()(dev)(gy, xd, wd, dx, dw, db, accumulate);
        return {accumulate ? into[0] : gx ? dx.view(x_shape) : Tensor(), dw, db};
      });
  return y;
}

void check_linear(const char* op, const Tensor& x, const Tensor& w, const Tensor& bias) {
  KOLO_CHECK(w.dim() == 2, op, ": weight must be [out, in], got ", w.describe());
  KOLO_CHECK(x.dim() >= 1 && x.size(-1) == w.size(1), op, ": input ", x.describe(), " does not match weight ",
             w.describe());
  if (bias.defined())
    KOLO_CHECK(bias.dim() == 1 && bias.size(0) == w.size(0), op, ": bias ", bias.describe(),
               " does not match weight ", w.describe());
}

// h = relu(x w1^T + b1), y = h w2^T + b2 through ffn_fwd/ffn_bwd as one node with inputs x, w1, b1, w2, b2
// (x's gradient summed into an earlier one as fused_linear does).
Tensor fused_feed_forward(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2) {
  const Device dev = x.device();
  const Tensor xd = x.detach().reshape({-1, w1.size(1)}), w1d = w1.detach(), b1d = b1.detach().contiguous(),
               w2d = w2.detach(), b2d = b2.detach().contiguous();
  Tensor h = Tensor::empty({xd.size(0), w1.size(0)}, x.dtype(), dev);
  Tensor y = Tensor::empty({xd.size(0), w2.size(0)}, x.dtype(), dev);
  Tensor mask;
  ffn_fwd_kernel()(dev)(xd, w1d, b1d, w2d, b2d, h, mask, y);
  const std::array<bool, 5> need{x.requires_grad(), w1.requires_grad(), b1.requires_grad(), w2.requires_grad(),
                                 b2.requires_grad()};
  autograd::record_into(
      "feed_forward", {x, w1, b1, w2, b2}, {&y}, {0}, {1, 2, 3, 4},
      [xd, w1d, w2d, h, mask, need, x_shape = x.shape()](const std::vector<Tensor>& g,
                                                          const std::vector<Tensor>& into) -> std::vector<Tensor> {
        const Device d = xd.device();
        auto grad_of = [&](size_t i, const Tensor& like, const Shape& shape) {
          return autograd::write_target(need[i], into[i], shape, like.dtype(), d);
        };
        bool accumulate = false;
        Tensor gx = need[0] ? input_grad_2d(into[0], xd.dtype(), d, xd.size(0), xd.size(1), &accumulate)
                            : Tensor();
        Tensor gw1 = grad_of(1, w1d, w1d.shape());
        Tensor gb1 = grad_of(2, w1d, {w1d.size(0)});
        Tensor gw2 = grad_of(3, w2d, w2d.shape());
        Tensor gb2 = grad_of(4, w2d, {w2d.size(0)});
        ffn_bwd_kernel()(d)(g[0].detach(), xd, w1d, h, mask, w2d, gx, gw1, gb1, gw2, gb2, accumulate);
        return {accumulate ? into[0] : need[0] ? gx.view(x_shape) : Tensor(), gw1, gb1, gw2, gb2};
      });
  return y;
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  check_linear("linear", x, w, bias);
  Shape lead(x.shape().begin(), x.shape().end() - 1);
  Tensor y;
  if (has_fused_linear(x, w, bias)) {
    y = fused_linear(x, w, bias, false);
  } else {
    Tensor x2 = x.reshape({-1, w.size(1)});
    y = bias.defined() ? add(matmul(x2, w.transpose(0, 1)), bias) : matmul(x2, w.transpose(0, 1));
  }
  lead.push_back(w.size(0));
  return y.reshape(lead);
}

Tensor linear_relu(const Tensor& x, const Tensor& w, const Tensor& bias) {
  check_linear("linear_relu", x, w, bias);
  if (!has_fused_linear(x, w, bias)) return relu(linear(x, w, bias));
  Shape lead(x.shape().begin(), x.shape().end() - 1);
  lead.push_back(w.size(0));
  return fused_linear(x, w, bias, true).reshape(lead);
}

Tensor feed_forward(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2) {
  check_linear("feed_forward (first layer)", x, w1, b1);
  KOLO_CHECK(w2.dim() == 2 && w2.size(1) == w1.size(0), "feed_forward: second weight ", w2.describe(),
             " does not take the first layer's ", w1.size(0), " outputs (weight ", w1.describe(), ")");
  if (b2.defined())
    KOLO_CHECK(b2.dim() == 1 && b2.size(0) == w2.size(0), "feed_forward: second bias ", b2.describe(),
               " does not match weight ", w2.describe());
  const bool fused = ffn_fwd_kernel().has(x.device().type) && ffn_bwd_kernel().has(x.device().type) &&
                     has_fused_linear(x, w1, b1) && has_fused_linear(x, w2, b2);
  // Without a backward to come the mask is not worth writing: the layers' own epilogues do the forward.
  if (!fused || !autograd::any_requires_grad({x, w1, b1, w2, b2})) return linear(linear_relu(x, w1, b1), w2, b2);
  Shape lead(x.shape().begin(), x.shape().end() - 1);
  lead.push_back(w2.size(0));
  return fused_feed_forward(x, w1, b1, w2, b2).reshape(lead);
}

}  // namespace kolo
