// Registers the CUDA implementations of the sequence-model kernel slots (core/ops/kernels/nn.h): softmax,
// cross-entropy, layer norm, dropout, embedding gather and fused attention. Id validation (targets, embedding
// ids) is counted on the device and reported through DeferredCheck at the next host synchronisation, so no
// kernel here waits for the device.
#include "core/device/cuda/cuda_check.h"
#include "core/device/cuda/deferred_errors.h"
#include "core/ops/cuda/attention_operands.h"
#include "core/ops/cuda/cuda_tensor.h"
#include "core/ops/cuda/nn_launch.h"
#include "core/ops/kernels/nn.h"

namespace kolo {
namespace {

void check_optional(const char* op, const Tensor& t, const Tensor& ref) {
  KOLO_CHECK(!t.defined() || (t.device() == ref.device() && t.is_contiguous() && t.dtype() == ref.dtype()), op,
             ": ", t.defined() ? t.describe() : std::string(), " must be contiguous ", dtype_name(ref.dtype()),
             " on ", ref.device().str());
}


int64_t last_dim(const Tensor& x) { return x.dim() ? x.size(-1) : 1; }

void cuda_softmax_fwd(const Tensor& x, Tensor& y, bool log) {
  cuda::KernelContext ctx(log ? "log_softmax" : "softmax", {&x, &y});
  const int64_t n = last_dim(x);
  cuda::launch_softmax_fwd(x.dtype(), x.data_ptr(), y.data_ptr(), n ? x.numel() / n : 0, n, log, ctx.stream());
}

void cuda_softmax_bwd(const Tensor& gy, const Tensor& y, Tensor& gx, bool log) {
  cuda::KernelContext ctx(log ? "log_softmax backward" : "softmax backward", {&gy, &y, &gx});
  const int64_t n = last_dim(y);
  cuda::launch_softmax_bwd(y.dtype(), gy.data_ptr(), y.data_ptr(), gx.data_ptr(), n ? y.numel() / n : 0, n, log,
                           ctx.stream());
}

void cuda_cross_entropy_fwd(const Tensor& logits, const Tensor& targets, double smoothing, int64_t ignore_index,
                            Tensor& loss, Tensor& lse) {
  cuda::KernelContext ctx("cross_entropy", {&logits, &targets, &loss, &lse});
  const int64_t n = logits.size(0), c = logits.size(1);
  const size_t row_bytes = static_cast<size_t>(n) * (sizeof(double) + sizeof(int));
  cuda::DeviceScratch scratch(ctx.device(), row_bytes + 16);
  auto* row_loss = static_cast<double*>(scratch.get());
  auto* row_valid = reinterpret_cast<int*>(row_loss + n);
  int* bad = cuda::DeferredCheck::get("cross_entropy", ctx.device())
                 .arm(detail::concat("cross_entropy: targets out of range [0, ", c, ") (ignore_index ", ignore_index,
                                     ") for logits ", logits.describe()));
  cuda::launch_cross_entropy_fwd(logits.dtype(), logits.data_ptr(), targets.data<int64_t>(), n, c, smoothing,
                                 ignore_index, loss.data_ptr(), lse.data_ptr(), row_loss, row_valid, bad,
                                 ctx.stream());
}

void cuda_cross_entropy_bwd(const Tensor& grad_loss, const Tensor& logits, const Tensor& targets, const Tensor& lse,
                            double smoothing, int64_t ignore_index, Tensor& grad_logits) {
  cuda::KernelContext ctx("cross_entropy backward", {&grad_loss, &logits, &targets, &lse, &grad_logits});
  cuda::DeviceScratch count(ctx.device(), sizeof(int));
  cuda::launch_cross_entropy_bwd(logits.dtype(), grad_loss.data_ptr(), logits.data_ptr(), targets.data<int64_t>(),
                                 lse.data_ptr(), logits.size(0), logits.size(1), smoothing, ignore_index,
                                 grad_logits.data_ptr(), static_cast<int*>(count.get()), ctx.stream());
}

void cuda_layer_norm_fwd(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, Tensor& y,
                         Tensor& mean, Tensor& rstd) {
  cuda::KernelContext ctx("layer_norm", {&x, &y, &mean, &rstd});
  check_optional("layer_norm", weight, x);
  check_optional("layer_norm", bias, x);
  const int64_t d = last_dim(x);
  cuda::launch_layer_norm_fwd(x.dtype(), x.data_ptr(), cuda::ptr_or_null(weight), cuda::ptr_or_null(bias), eps,
                              d ? x.numel() / d : 0, d, y.data_ptr(), mean.data_ptr(), rstd.data_ptr(), ctx.stream());
}

void cuda_layer_norm_bwd(const Tensor& gy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                         const Tensor& rstd, Tensor& gx, Tensor& gw, Tensor& gb) {
  cuda::KernelContext ctx("layer_norm backward", {&gy, &x, &mean, &rstd, &gx});
  check_optional("layer_norm backward", weight, x);
  check_optional("layer_norm backward", gw, x);
  check_optional("layer_norm backward", gb, x);
  const int64_t d = last_dim(x);
  const int64_t rows = d ? x.numel() / d : 0;
  const bool params = gw.defined() || gb.defined();
  cuda::DeviceScratch partial(ctx.device(), params ? cuda::layer_norm_bwd_partial_bytes(x.dtype(), rows, d) : 16);
  cuda::launch_layer_norm_bwd(x.dtype(), gy.data_ptr(), x.data_ptr(), cuda::ptr_or_null(weight), mean.data_ptr(),
                              rstd.data_ptr(), rows, d, gx.data_ptr(), cuda::mut_ptr_or_null(gw),
                              cuda::mut_ptr_or_null(gb), partial.get(), ctx.stream());
}

void cuda_dropout_apply(const Tensor& x, const Tensor& residual, bool relu, double p, uint64_t seed, uint64_t base,
                        Tensor& y) {
  cuda::KernelContext ctx("dropout", {&x, &y});  // the op checked that a residual is on this device
  cuda::launch_dropout(x.dtype(), x.data_ptr(), cuda::ptr_or_null(residual), relu, p, seed, base, x.numel(),
                       y.data_ptr(), ctx.stream());
}

void cuda_relu_dropout_backward(const Tensor& g, const Tensor& y, double p, Tensor& gx) {
  cuda::KernelContext ctx("relu_dropout_bwd", {&g, &y, &gx});
  cuda::launch_relu_dropout_bwd(g.dtype(), g.data_ptr(), y.data_ptr(), p, g.numel(), gx.data_ptr(), ctx.stream());
}

void cuda_embedding_gather(const Tensor& weight, const Tensor& indices, Tensor& out) {
  cuda::KernelContext ctx("embedding", {&weight, &indices, &out});
  const int64_t v = weight.size(0), d = weight.size(1), n = indices.numel();
  if (n == 0) return;
  int* bad = cuda::DeferredCheck::get("embedding", ctx.device())
                 .arm(detail::concat("embedding: ids out of range [0, ", v, ") for weight ", weight.describe()));
  cuda::launch_embedding_gather(weight.data_ptr(), dtype_size(weight.dtype()), v, d, weight.strides()[0],
                                weight.strides()[1], indices.data<int64_t>(), n, out.data_ptr(), bad, ctx.stream());
}

cuda::AttnShape attn_shape(const Tensor& q, const Tensor& k) {
  return {q.size(0), q.size(1), q.size(2), k.size(2), q.size(3)};
}

void cuda_attention_fwd(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, double scale,
                        double dropout_p, uint64_t seed, uint64_t base, Tensor& out, Tensor& lse) {
  cuda::KernelContext ctx("scaled_dot_product_attention", {&q, &k, &v, &out, &lse});
  KOLO_CHECK(!mask.defined() || (mask.device() == q.device() && mask.dtype() == q.dtype()),
             "scaled_dot_product_attention: mask ", mask.defined() ? mask.describe() : std::string(),
             " must be ", dtype_name(q.dtype()), " on ", q.device().str());
  using cuda::attn_operand;
  cuda::launch_attention_fwd(q.dtype(), attn_shape(q, k), attn_operand(q), attn_operand(k), attn_operand(v),
                             attn_operand(mask), scale, dropout_p, seed, base, cuda::attn_output(out),
                             lse.data_ptr(), ctx.stream());
}

void cuda_attention_bwd(const Tensor& gout, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                        const Tensor& out, const Tensor& lse, double scale, double dropout_p, uint64_t seed,
                        uint64_t base, Tensor& gq, Tensor& gk, Tensor& gv, Tensor& grad_scores) {
  cuda::KernelContext ctx("scaled_dot_product_attention backward", {&gout, &q, &k, &v, &out, &lse, &gq, &gk, &gv});
  KOLO_CHECK(lse.is_contiguous(), "scaled_dot_product_attention backward: lse must be contiguous, got ",
             lse.describe());
  const cuda::AttnShape s = attn_shape(q, k);
  const size_t stat = q.dtype() == DType::F64 ? sizeof(double) : sizeof(float);
  cuda::DeviceScratch delta(ctx.device(), static_cast<size_t>(s.b * s.h * s.tq) * stat);
  using cuda::attn_operand, cuda::attn_output;
  cuda::launch_attention_bwd(q.dtype(), s, attn_operand(gout), attn_operand(q), attn_operand(k), attn_operand(v),
                             attn_operand(mask), attn_operand(out), lse.data_ptr(), scale, dropout_p, seed, base,
                             attn_output(gq), attn_output(gk), attn_output(gv), cuda::mut_ptr_or_null(grad_scores),
                             delta.get(), ctx.stream());
}

}  // namespace

KOLO_REGISTER_KERNEL(softmax_fwd, CUDA, cuda_softmax_fwd);
KOLO_REGISTER_KERNEL(softmax_bwd, CUDA, cuda_softmax_bwd);
KOLO_REGISTER_KERNEL(cross_entropy_fwd, CUDA, cuda_cross_entropy_fwd);
KOLO_REGISTER_KERNEL(cross_entropy_bwd, CUDA, cuda_cross_entropy_bwd);
KOLO_REGISTER_KERNEL(layer_norm_fwd, CUDA, cuda_layer_norm_fwd);
KOLO_REGISTER_KERNEL(layer_norm_bwd, CUDA, cuda_layer_norm_bwd);
KOLO_REGISTER_KERNEL(dropout_apply, CUDA, cuda_dropout_apply);
KOLO_REGISTER_KERNEL(relu_dropout_backward, CUDA, cuda_relu_dropout_backward);
KOLO_REGISTER_KERNEL(embedding_gather, CUDA, cuda_embedding_gather);
KOLO_REGISTER_KERNEL(attention_fwd, CUDA, cuda_attention_fwd);
KOLO_REGISTER_KERNEL(attention_bwd, CUDA, cuda_attention_bwd);

}  // namespace kolo
