// Elementwise ops: forward through the kernel slots, backward recorded next to each forward.
#include "core/ops/elementwise.h"

#include <algorithm>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops/kernels/elementwise.h"
#include "core/ops/reduce.h"

namespace kolo {

namespace {

DType result_dtype(const Tensor& a, const Tensor& b, const char* op) {
  KOLO_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch ", a.describe(), " vs ", b.describe());
  KOLO_CHECK(a.device() == b.device(), op, ": device mismatch ", a.describe(), " vs ", b.describe());
  return a.dtype();
}

Tensor binary_forward(BinaryOp op, const Tensor& a, const Tensor& b, const char* name) {
  const DType dt = result_dtype(a, b, name);
  const Shape out_shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = Tensor::empty(out_shape, dt, a.device());
  Tensor ea, eb;
  {
    NoGradGuard ng;
    ea = a.shape() == out_shape ? a : a.expand(out_shape);
    eb = b.shape() == out_shape ? b : b.expand(out_shape);
  }
  binary_kernel()(a.device())(op, ea, eb, out);
  return out;
}

Tensor unary_forward(UnaryOp op, const Tensor& x, const char* name) {
  KOLO_CHECK(is_floating(x.dtype()) || op == UnaryOp::Neg || op == UnaryOp::Abs || op == UnaryOp::Square,
             name, ": needs a floating tensor, got ", x.describe());
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  unary_kernel()(x.device())(op, x, out);
  // Saved tensors are detached: holding the output's autograd handle would make a node -> output -> node cycle.
  Tensor xd = x.detach(), yd = out.detach();
  autograd::record(name, {x}, {&out}, [op, xd, yd](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    Tensor gi = Tensor::empty(xd.shape(), xd.dtype(), xd.device());
    unary_backward_kernel()(xd.device())(op, g[0], xd, yd, gi);
    return {gi};
  });
  return out;
}

}  // namespace

Tensor Tensor::expand(const Shape& shp) const {
  KOLO_CHECK(shp.size() >= shape().size(), "expand: ", describe(), " to fewer dimensions ", shape_str(shp));
  const size_t lead = shp.size() - shape().size();
  Shape st(shp.size(), 0);
  for (size_t i = 0; i < shp.size(); ++i) {
    KOLO_CHECK(shp[i] >= 0, "expand: ", describe(), " to negative size ", shape_str(shp));
    if (i < lead) continue;
    const int64_t d = shape()[i - lead];
    KOLO_CHECK(d == shp[i] || d == 1, "expand: ", describe(), " cannot expand to ", shape_str(shp));
    st[i] = d == shp[i] ? strides()[i - lead] : 0;
  }
  Tensor out = as_strided(shp, st, offset());
  const Shape in_shape = shape();
  autograd::record("expand", {*this}, {&out}, [in_shape](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {sum_to_shape(g[0], in_shape)};
  });
  return out;
}

Tensor sum_to_shape(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  const size_t lead = g.shape().size() - shape.size();
  std::vector<int64_t> dims;
  for (size_t i = 0; i < g.shape().size(); ++i) {
    if (i < lead || (shape[i - lead] == 1 && g.shape()[i] != 1)) dims.push_back(static_cast<int64_t>(i));
  }
  Tensor r = sum(g, dims, /*keepdim=*/true);
  return r.reshape(shape);
}

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::Add, a, b, "add");
  const Shape sa = a.shape(), sb = b.shape();
  autograd::record("add", {a, b}, {&out}, [sa, sb](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {sum_to_shape(g[0], sa), sum_to_shape(g[0], sb)};
  });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::Sub, a, b, "sub");
  const Shape sa = a.shape(), sb = b.shape();
  autograd::record("sub", {a, b}, {&out}, [sa, sb](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {sum_to_shape(g[0], sa), sum_to_shape(neg(g[0]), sb)};
  });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::Mul, a, b, "mul");
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  Tensor ad = a.detach(), bd = b.detach();
  autograd::record("mul", {a, b}, {&out}, [ad, bd, ga, gb](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {ga ? sum_to_shape(mul(g[0], bd), ad.shape()) : Tensor(),
            gb ? sum_to_shape(mul(g[0], ad), bd.shape()) : Tensor()};
  });
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  // Integer division by zero kills a CPU process (SIGFPE). (A GPU does not trap, and reading the divisor back
  // there would sync the stream and break graph capture.)
  if (!is_floating(result_dtype(a, b, "div")) && b.device().is_cpu()) {
    const std::vector<int64_t> divisor = b.to_vector<int64_t>();
    KOLO_CHECK(std::find(divisor.begin(), divisor.end(), 0) == divisor.end(), "div: integer division by zero (",
               a.describe(), " / ", b.describe(), ")");
  }
  Tensor out = binary_forward(BinaryOp::Div, a, b, "div");
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  Tensor ad = a.detach(), bd = b.detach(), od = out.detach();
  autograd::record("div", {a, b}, {&out}, [bd, od, ga, gb, ad](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    Tensor ga_t = ga ? sum_to_shape(div(g[0], bd), ad.shape()) : Tensor();
    Tensor gb_t = gb ? sum_to_shape(neg(div(mul(g[0], od), bd)), bd.shape()) : Tensor();
    return {ga_t, gb_t};
  });
  return out;
}

static Tensor minmax(BinaryOp op, const Tensor& a, const Tensor& b, const char* name) {
  Tensor out = binary_forward(op, a, b, name);
  Tensor ad = a.detach(), bd = b.detach(), od = out.detach();
  autograd::record(name, {a, b}, {&out}, [ad, bd, od](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    // Route the gradient to whichever operand produced the output (ties go to a).
    Tensor from_a = Tensor::empty(od.shape(), od.dtype(), od.device());
    binary_kernel()(od.device())(BinaryOp::Eq, ad.shape() == od.shape() ? ad : ad.expand(od.shape()), od, from_a);
    Tensor ga_full = mul(g[0], from_a);
    Tensor gb_full = sub(g[0], ga_full);
    return {sum_to_shape(ga_full, ad.shape()), sum_to_shape(gb_full, bd.shape())};
  });
  return out;
}

Tensor maximum(const Tensor& a, const Tensor& b) { return minmax(BinaryOp::Max, a, b, "maximum"); }
Tensor minimum(const Tensor& a, const Tensor& b) { return minmax(BinaryOp::Min, a, b, "minimum"); }

Tensor affine(const Tensor& x, double s, double t) {
  KOLO_CHECK(is_floating(x.dtype()), "affine: needs a floating tensor, got ", x.describe());
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  affine_kernel()(x.device())(x, s, t, out);
  autograd::record("affine", {x}, {&out}, [s](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {scale(g[0], s)};
  });
  return out;
}

Tensor scale(const Tensor& x, double s) { return affine(x, s, 0.0); }
Tensor add_scalar(const Tensor& x, double s) { return affine(x, 1.0, s); }

Tensor neg(const Tensor& x) { return affine(x, -1.0, 0.0); }
Tensor exp(const Tensor& x) { return unary_forward(UnaryOp::Exp, x, "exp"); }
Tensor log(const Tensor& x) { return unary_forward(UnaryOp::Log, x, "log"); }
Tensor sqrt(const Tensor& x) { return unary_forward(UnaryOp::Sqrt, x, "sqrt"); }
Tensor rsqrt(const Tensor& x) { return unary_forward(UnaryOp::Rsqrt, x, "rsqrt"); }
Tensor tanh(const Tensor& x) { return unary_forward(UnaryOp::Tanh, x, "tanh"); }
Tensor sigmoid(const Tensor& x) { return unary_forward(UnaryOp::Sigmoid, x, "sigmoid"); }
Tensor relu(const Tensor& x) { return unary_forward(UnaryOp::Relu, x, "relu"); }
Tensor gelu(const Tensor& x) { return unary_forward(UnaryOp::Gelu, x, "gelu"); }
Tensor square(const Tensor& x) { return unary_forward(UnaryOp::Square, x, "square"); }
Tensor abs(const Tensor& x) { return unary_forward(UnaryOp::Abs, x, "abs"); }
Tensor reciprocal(const Tensor& x) { return unary_forward(UnaryOp::Reciprocal, x, "reciprocal"); }

void add_(Tensor& y, const Tensor& x, double alpha) {
  KOLO_CHECK(y.shape() == x.shape(), "add_: ", y.describe(), " += ", x.describe());
  KOLO_CHECK(y.is_contiguous(), "add_: destination must be contiguous, got ", y.describe());
  KOLO_CHECK(y.device() == x.device(), "add_: device mismatch ", y.describe(), " vs ", x.describe());
  if (x.is_sparse()) {
    KOLO_CHECK(alpha == 1.0, "add_: scaled sparse accumulation is not supported");
    axpy_kernel()(y.device())(y, x.to_dense(), 1.0);
    return;
  }
  axpy_kernel()(y.device())(y, x, alpha);
}

void scale_(Tensor& y, double s) { affine_kernel()(y.device())(y, s, 0.0, y); }

bool all_finite(const Tensor& x) {
  if (!is_floating(x.dtype())) return true;
  if (x.is_sparse()) return all_finite(x.sparse_values());
  return all_finite_kernel()(x.device())(x.contiguous());
}

}  // namespace kolo
