// Kernel slots of the sequence-model ops (softmax, cross-entropy, layer norm, dropout, embedding,
// attention). CPU kernels live in ops/cpu/*_cpu.cc; a CUDA backend registers into the same slots.
//
// Contracts every backend keeps:
// - Floating tensors are f32, f64, bf16 or f16; half types are stored as such and computed in f32.
// - "Statistics" tensors (logsumexp, mean, rstd) use the accumulation dtype: F64 for f64 inputs, F32
//   otherwise. They are written by the forward and read back by the backward, never interpreted by the op.
// - Scalars that the backward needs from the graph (the loss gradient) arrive as device tensors, never as
//   host doubles, so a device backend need not synchronise.
// - Index validation (targets, embedding ids) happens in the kernel that reads the ids, which throws a
//   kolo::Error naming the op on CPU; the op layer cannot see device memory. On CUDA the kernel counts bad
//   ids on the device and the error is thrown at the next host synchronisation (core/device/cuda/
//   deferred_errors.h), so no kernel waits for the device.
#pragma once

#include <cstdint>

#include "core/ops/dispatch.h"
#include "core/tensor/tensor.h"

namespace kolo {

// dtype of the statistics tensors for inputs of dtype t.
inline DType nn_stats_dtype(DType t) { return t == DType::F64 ? DType::F64 : DType::F32; }

// Softmax (log_softmax when `log`) over the last dimension: x and y contiguous, same shape and dtype.
KOLO_DECLARE_KERNEL(softmax_fwd, void(const Tensor& x, Tensor& y, bool log));
// gx from gy and the forward output y (all contiguous, same shape):
// softmax: gx = y * (gy - sum(gy * y)); log_softmax: gx = gy - exp(y) * sum(gy).
KOLO_DECLARE_KERNEL(softmax_bwd, void(const Tensor& gy, const Tensor& y, Tensor& gx, bool log));

// Fused log-softmax + label-smoothed NLL with mean reduction over rows whose target != ignore_index.
// logits contiguous [N, C]; targets i64 contiguous [N]; loss 0-d and lse [N] in the statistics dtype (f32 for
// half logits: the loss of a bf16 model needs no f32 copy of its logits).
// Row loss: (1 - eps) * (lse - z_t) + eps * (lse - mean_c z_c). All rows ignored -> NaN (0/0, as PyTorch).
KOLO_DECLARE_KERNEL(cross_entropy_fwd, void(const Tensor& logits, const Tensor& targets, double smoothing,
                                            int64_t ignore_index, Tensor& loss, Tensor& lse));
// grad_logits [N, C] = grad_loss / count * (softmax(z) - (1 - eps) * onehot(t) - eps / C); 0 on ignored rows.
// grad_loss is a 0-d tensor of the statistics dtype.
KOLO_DECLARE_KERNEL(cross_entropy_bwd, void(const Tensor& grad_loss, const Tensor& logits, const Tensor& targets,
                                            const Tensor& lse, double smoothing, int64_t ignore_index,
                                            Tensor& grad_logits));

// Layer norm over the last dimension of contiguous x [R, D]; weight/bias [D] contiguous or undefined.
// Writes y (x's shape and dtype) and mean/rstd [R] (statistics dtype).
KOLO_DECLARE_KERNEL(layer_norm_fwd, void(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                                         Tensor& y, Tensor& mean, Tensor& rstd));
// gx (always), gw and gb (skipped when undefined; [D], x's dtype) from gy [R, D] contiguous.
KOLO_DECLARE_KERNEL(layer_norm_bwd, void(const Tensor& gy, const Tensor& x, const Tensor& weight,
                                         const Tensor& mean, const Tensor& rstd, Tensor& gx, Tensor& gw,
                                         Tensor& gb));

// Inverted dropout on contiguous x: element i is kept iff Generator::uniform01(seed, base + i) >= p, and
// kept elements are scaled by 1 / (1 - p) (p == 1 drops everything). The backward applies the same call
// to the gradient, so no mask is stored. With a defined `residual` (contiguous, x's shape and dtype) y is
// residual + dropout(x) in one pass, rounded once: the post-dropout residual add of a Transformer layer.
// With `relu`, x is first replaced by x < 0 ? 0 : x (a feed-forward block's dropout(relu(x)) in one pass; NaN
// passes, as relu()).
KOLO_DECLARE_KERNEL(dropout_apply, void(const Tensor& x, const Tensor& residual, bool relu, double p, uint64_t seed,
                                        uint64_t base, Tensor& y));
// The backward of y = dropout(relu(x)) from y alone: an element passes iff it was kept and positive, i.e.
// iff y > 0, so gx = y > 0 ? g / (1 - p) : 0 (0 everywhere when p == 1). All contiguous, one shape and dtype.
KOLO_DECLARE_KERNEL(relu_dropout_backward, void(const Tensor& g, const Tensor& y, double p, Tensor& gx));

// out[i, :] = weight[indices[i], :]; weight 2-D with any strides, indices i64 contiguous [N], out
// contiguous [N, D]. Ids outside [0, V) throw.
KOLO_DECLARE_KERNEL(embedding_gather, void(const Tensor& weight, const Tensor& indices, Tensor& out));

// Scaled dot-product attention, fused: per query row, scores s_j = scale * q.k_j + mask_j, p = softmax(s),
// optional dropout on p (keep iff uniform01(seed, base + ((b*H + h)*Tq + i)*Tk + j) >= dropout_p), and
// out = p @ v. Nothing of size [Tq, Tk] outlives a call: the CPU and the CUDA fused kernels never store the
// matrix; CUDA's GEMM path (core/ops/cuda/attention_launch.h) holds score chunks in bounded scratch.
// q [B, H, Tq, Dh], k/v [B, H, Tk, Dh], any strides; mask undefined or already expanded (stride-0 views)
// to [B, H, Tq, Tk], q's dtype. out [B, H, Tq, Dh] with any strides (the op allocates it contiguous or
// head-interleaved); lse [B, H, Tq] (statistics dtype, contiguous) is the row logsumexp of the scores
// (-inf for rows whose mask is -inf everywhere; such rows output zeros).
KOLO_DECLARE_KERNEL(attention_fwd, void(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                                        double scale, double dropout_p, uint64_t seed, uint64_t base,
                                        Tensor& out, Tensor& lse));
// Gradients for q, k, v (their inputs' shapes, any strides) from gout and the forward's out and lse, by
// recomputing the probabilities row by row. grad_scores (d loss / d s, contiguous [B, H, Tq, Tk]) is
// written only when defined, for a mask that requires grad.
KOLO_DECLARE_KERNEL(attention_bwd, void(const Tensor& gout, const Tensor& q, const Tensor& k, const Tensor& v,
                                        const Tensor& mask, const Tensor& out, const Tensor& lse, double scale,
                                        double dropout_p, uint64_t seed, uint64_t base, Tensor& gq, Tensor& gk,
                                        Tensor& gv, Tensor& grad_scores));

}  // namespace kolo
