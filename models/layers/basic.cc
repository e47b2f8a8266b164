// Linear, LayerNorm, Embedding, Dropout: parameters, initialisation and forward through core ops.
#include "models/layers/basic.h"

#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/ops/linalg.h"
#include "core/ops/nn.h"
#include "models/layers/init.h"

namespace kolo::models {

Linear::Linear(int64_t in, int64_t out, bool bias, Generator& gen, LinearInit init) : Module("Linear") {
  KOLO_CHECK(in > 0 && out > 0, "Linear: sizes must be positive, got in=", in, " out=", out);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  weight_ = register_parameter("weight", init == LinearInit::kXavier ? init::xavier_uniform({out, in}, in, out, gen)
                                                                     : init::uniform({out, in}, bound, gen));
  if (bias)
    bias_ = register_parameter("bias", init == LinearInit::kXavier ? Tensor::zeros({out})
                                                                   : init::uniform({out}, bound, gen));
}

Tensor Linear::forward(const Tensor& x) const { return note(linear(x, weight_, bias_)); }

Tensor Linear::forward_relu(const Tensor& x) const { return note(linear_relu(x, weight_, bias_)); }

LayerNorm::LayerNorm(int64_t dim, double eps) : Module("LayerNorm"), eps_(eps) {
  weight_ = register_parameter("weight", Tensor::ones({dim}));
  bias_ = register_parameter("bias", Tensor::zeros({dim}));
}

Tensor LayerNorm::forward(const Tensor& x) const { return note(layer_norm(x, weight_, bias_, eps_)); }

Embedding::Embedding(int64_t vocab, int64_t dim, double std, Generator& gen, int64_t padding_idx)
    : Module("Embedding") {
  KOLO_CHECK(vocab > 0 && dim > 0, "Embedding: sizes must be positive, got vocab=", vocab, " dim=", dim);
  KOLO_CHECK(padding_idx < vocab, "Embedding: padding_idx ", padding_idx, " outside vocab ", vocab);
  Tensor w = init::normal({vocab, dim}, std, gen);
  if (padding_idx >= 0) w.select(0, padding_idx).zero_();
  weight_ = register_parameter("weight", w);
}

Tensor Embedding::forward(const Tensor& ids) const { return note(embedding(weight_, ids)); }

Dropout::Dropout(double p, uint64_t seed) : Module("Dropout"), p_(p), gen_(seed) {
  KOLO_CHECK(p >= 0.0 && p < 1.0, "Dropout: p must be in [0, 1), got ", p);
  register_generator("rng", &gen_);
}

Tensor Dropout::forward(const Tensor& x) { return note(dropout(x, p_, is_training(), gen_)); }

Tensor Dropout::forward_relu(const Tensor& x) { return note(relu_dropout(x, p_, is_training(), gen_)); }

Tensor Dropout::forward_add(const Tensor& residual, const Tensor& x) {
  return note(dropout_add(residual, x, p_, is_training(), gen_));
}

}  // namespace kolo::models
