// Scaled dot-product attention (fused forward/backward kernels, O(Tk) memory per query row) and the
// additive masks it takes: causal and key padding.
#include <cmath>
#include <limits>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops/elementwise.h"
#include "core/ops/kernels/nn.h"
#include "core/ops/nn.h"

namespace kolo {

Tensor causal_mask(int64_t t, DType dtype, Device device) {
  KOLO_CHECK(t >= 0, "causal_mask: length ", t, " must be >= 0");
  KOLO_CHECK(is_floating(dtype), "causal_mask: additive masks need a floating dtype, got ", dtype_name(dtype));
  std::vector<double> m(static_cast<size_t>(t * t), 0.0);
  for (int64_t i = 0; i < t; ++i)
    for (int64_t j = i + 1; j < t; ++j) m[static_cast<size_t>(i * t + j)] = -std::numeric_limits<double>::infinity();
  return Tensor::from_vector(m, {1, 1, t, t}).to(dtype).to(device);
}

Tensor padding_mask(const Tensor& key_mask, DType dtype) {
  KOLO_CHECK(key_mask.dim() == 2, "padding_mask: key mask must be [B, Tk], got ", key_mask.describe());
  KOLO_CHECK(is_floating(dtype), "padding_mask: additive masks need a floating dtype, got ", dtype_name(dtype));
  std::vector<double> m = key_mask.to_vector<double>();
  for (double& x : m) x = x != 0.0 ? 0.0 : -std::numeric_limits<double>::infinity();
  return Tensor::from_vector(m, {key_mask.size(0), 1, 1, key_mask.size(1)}).to(dtype).to(key_mask.device());
}

namespace {

// An output [B, H, T, last] in the memory layout of `like` [B, H, T, *]: head-interleaved when `like` is a
// [B, T, H * D] projection viewed as heads (the attention module's split), else contiguous. Outputs then
// merge back into [B, T, H * D] and gradients flow into the projections as views, not transposing copies.
Tensor empty_heads_like(const Tensor& like, int64_t last) {
  const int64_t nb = like.size(0), nh = like.size(1), t = like.size(2), d = like.size(3);
  const Shape& st = like.strides();
  const bool interleaved = nh > 1 && t > 1 && st[3] == 1 && st[1] == d && st[2] == nh * d && st[0] == t * st[2];
  if (!interleaved) return Tensor::empty({nb, nh, t, last}, like.dtype(), like.device());
  return Tensor::empty({nb, t, nh, last}, like.dtype(), like.device()).transpose(1, 2);
}

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                                    double scale, double dropout_p, bool training, Generator* gen) {
  const char* op = "scaled_dot_product_attention";
  KOLO_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, op, ": q, k, v must be [B, H, T, D], got ",
             q.describe(), ", ", k.describe(), ", ", v.describe());
  KOLO_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype() && is_floating(q.dtype()), op,
             ": q, k, v need one floating dtype, got ", q.describe(), ", ", k.describe(), ", ", v.describe());
  KOLO_CHECK(q.device() == k.device() && q.device() == v.device(), op, ": q, k, v on different devices: ",
             q.describe(), ", ", k.describe(), ", ", v.describe());
  const int64_t nb = q.size(0), nh = q.size(1), tq = q.size(2), dh = q.size(3), tk = k.size(2);
  KOLO_CHECK(k.size(0) == nb && v.size(0) == nb && k.size(1) == nh && v.size(1) == nh && k.size(3) == dh &&
                 v.size(2) == tk,
             op, ": shapes do not match: q ", shape_str(q.shape()), ", k ", shape_str(k.shape()), ", v ",
             shape_str(v.shape()));
  KOLO_CHECK(dropout_p >= 0.0 && dropout_p <= 1.0, op, ": dropout probability ", dropout_p, " outside [0, 1]");
  const bool use_dropout = training && dropout_p > 0.0;
  KOLO_CHECK(!use_dropout || gen != nullptr, op, ": dropout during training needs a Generator");
  const double sc = scale != 0.0 ? scale : 1.0 / std::sqrt(static_cast<double>(dh));
  const Shape score_shape{nb, nh, tq, tk};
  Tensor m;
  if (mask.defined()) {
    KOLO_CHECK(mask.device() == q.device(), op, ": mask ", mask.describe(), " is on another device than ",
               q.describe());
    KOLO_CHECK(is_floating(mask.dtype()), op, ": mask must be additive (floating), got ", mask.describe());
    KOLO_CHECK(mask.dim() <= 4 && broadcast_shapes(mask.shape(), score_shape, op) == score_shape, op, ": mask ",
               mask.describe(), " does not broadcast to the scores ", shape_str(score_shape));
    NoGradGuard ng;
    m = mask.dtype() == q.dtype() ? mask : mask.to(q.dtype());
    m = m.expand(score_shape).detach();
  }
  const double p = use_dropout ? dropout_p : 0.0;
  const uint64_t seed = use_dropout ? gen->seed() : 0;
  const uint64_t base = use_dropout ? gen->reserve(static_cast<uint64_t>(nb * nh * tq * tk)) : 0;
  Tensor out = empty_heads_like(q, v.size(3));
  Tensor lse = Tensor::empty({nb, nh, tq}, nn_stats_dtype(q.dtype()), q.device());
  attention_fwd_kernel()(q.device())(q, k, v, m, sc, p, seed, base, out, lse);

  const bool mask_grad = mask.defined() && mask.requires_grad();
  std::vector<Tensor> inputs{q, k, v};
  if (mask_grad) inputs.push_back(mask);
  Tensor qd = q.detach(), kd = k.detach(), vd = v.detach(), od = out.detach();
  const Shape mask_shape = mask.defined() ? mask.shape() : Shape{};
  const DType mask_dtype = mask.defined() ? mask.dtype() : q.dtype();
  autograd::record(op, inputs, {&out},
                   [qd, kd, vd, m, od, lse, sc, p, seed, base, mask_grad, mask_shape, mask_dtype,
                    score_shape](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                     Tensor gq = empty_heads_like(qd, qd.size(3));
                     Tensor gk = empty_heads_like(kd, kd.size(3));
                     Tensor gv = empty_heads_like(vd, vd.size(3));
                     Tensor gs = mask_grad ? Tensor::empty(score_shape, qd.dtype(), qd.device()) : Tensor();
                     attention_bwd_kernel()(qd.device())(g[0], qd, kd, vd, m, od, lse, sc, p, seed, base, gq, gk,
                                                         gv, gs);
                     std::vector<Tensor> grads{gq, gk, gv};
                     if (mask_grad) grads.push_back(sum_to_shape(gs, mask_shape).to(mask_dtype));
                     return grads;
                   });
  return out;
}

}  // namespace kolo
