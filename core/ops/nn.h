// Ops for sequence models and classifiers: softmax family, losses, normalisation, dropout, embeddings,
// attention and masks.
#pragma once

#include <cstdint>

#include "core/tensor/tensor.h"

namespace kolo {

Tensor softmax(const Tensor& x, int64_t dim = -1);
Tensor log_softmax(const Tensor& x, int64_t dim = -1);

// Mean cross-entropy of logits [N, C] against int64 targets [N], with label smoothing eps (PyTorch's
// definition: (1-eps) * nll + eps * mean over classes of -log p). Targets equal to ignore_index contribute
// nothing and are excluded from the mean. Out-of-range targets throw. The loss is f32 for f32, bf16 and f16
// logits (computed in f32 throughout) and f64 for f64; the logits' gradient keeps their dtype.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, double label_smoothing = 0.0,
                     int64_t ignore_index = -100);

// Layer norm over the last dimension with affine weight/bias [D] (either may be undefined).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);

// Inverted dropout with keep-probability 1-p; the mask comes from (gen.seed, counters), so it is
// reproducible. Identity when !training or p == 0.
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen);
// dropout(relu(x), p, training, gen) with the same mask, in one pass; its backward reads only the output.
Tensor relu_dropout(const Tensor& x, double p, bool training, Generator& gen);
// residual + dropout(x, p, training, gen) with the same mask, fused into one pass when the two have one shape
// and dtype (rounded once, where the composite rounds dropout's output first); otherwise the composite.
Tensor dropout_add(const Tensor& residual, const Tensor& x, double p, bool training, Generator& gen);

// Rows of `weight` [V, D] picked by int64 `indices` (any shape) -> [..., D]. The gradient for `weight` is
// row-sparse (indices + rows), the form TensorFlow calls IndexedSlices. Out-of-range ids throw.
Tensor embedding(const Tensor& weight, const Tensor& indices);

// Additive attention masks (0 where attending is allowed, -inf where not), broadcastable to
// [B, heads, Tq, Tk]: causal [1, 1, T, T]; padding from a [B, Tk] key mask (1 = real token) -> [B, 1, 1, Tk].
Tensor causal_mask(int64_t t, DType dtype = DType::F32, Device device = Device::cpu());
Tensor padding_mask(const Tensor& key_mask, DType dtype = DType::F32);

// softmax(q k^T * scale + mask) v for q [B, H, Tq, Dh], k [B, H, Tk, Dh], v [B, H, Tk, Dv] (any strides, e.g.
// [B, T, H, D] projections viewed through transpose(1, 2)) -> contiguous [B, H, Tq, Dv]; mask optional
// (additive, broadcastable, differentiable when it requires grad); scale defaults to 1/sqrt(Dh); dropout on
// the attention weights when p > 0 and training (counters as dropout() on a [B, H, Tq, Tk] tensor). Fused:
// the [Tq, Tk] weights are never stored. A query row whose mask is -inf everywhere outputs zeros (PyTorch's
// composed formula gives NaN), so padded queries cannot poison a batch.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                                    double scale = 0.0, double dropout_p = 0.0, bool training = false,
                                    Generator* gen = nullptr);

}  // namespace kolo
