// cross_entropy: fused log-softmax + label-smoothed negative log-likelihood, mean over non-ignored rows.
// The forward saves only the row logsumexp; the backward rebuilds the probabilities from it.
#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops/kernels/nn.h"
#include "core/ops/nn.h"

namespace kolo {

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, double label_smoothing, int64_t ignore_index) {
  KOLO_CHECK(logits.dim() == 2, "cross_entropy: logits must be [N, C], got ", logits.describe());
  KOLO_CHECK(is_floating(logits.dtype()), "cross_entropy: logits must be floating, got ", logits.describe());
  KOLO_CHECK(targets.dim() == 1 && targets.size(0) == logits.size(0), "cross_entropy: targets ",
             targets.describe(), " do not match logits ", logits.describe(), " (want [", logits.size(0), "])");
  KOLO_CHECK(targets.dtype() == DType::I64 || targets.dtype() == DType::I32,
             "cross_entropy: targets must be integer class ids, got ", targets.describe());
  KOLO_CHECK(targets.device() == logits.device(), "cross_entropy: targets ", targets.describe(),
             " and logits ", logits.describe(), " are on different devices");
  KOLO_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0, "cross_entropy: label_smoothing ",
             label_smoothing, " outside [0, 1]");
  KOLO_CHECK(logits.size(1) > 0, "cross_entropy: no classes in ", logits.describe());
  Tensor z, t;
  {
    NoGradGuard ng;
    z = logits.contiguous();
    t = targets.to(DType::I64).contiguous();
  }
  Tensor loss = Tensor::empty({}, nn_stats_dtype(logits.dtype()), logits.device());
  Tensor lse = Tensor::empty({logits.size(0)}, nn_stats_dtype(logits.dtype()), logits.device());
  cross_entropy_fwd_kernel()(logits.device())(z, t, label_smoothing, ignore_index, loss, lse);
  Tensor zd = z.detach();
  autograd::record("cross_entropy", {logits}, {&loss},
                   [zd, t, lse, label_smoothing, ignore_index](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                     Tensor gz = Tensor::empty(zd.shape(), zd.dtype(), zd.device());
                     Tensor gl = g[0].to(nn_stats_dtype(zd.dtype())).contiguous();
                     cross_entropy_bwd_kernel()(zd.device())(gl, zd, t, lse, label_smoothing, ignore_index, gz);
                     return {gz};
                   });
  return loss;
}

}  // namespace kolo
