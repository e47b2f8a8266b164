// The small building blocks: Linear, LayerNorm, Embedding, Dropout.
#pragma once

#include "core/tensor/tensor.h"
#include "models/module.h"

namespace kolo::models {

enum class LinearInit {
  kTorchDefault,  // U(-1/sqrt(in), 1/sqrt(in)) for weight and bias (nn.Linear's reset_parameters)
  kXavier,        // Xavier-uniform weight, zero bias (fairseq Transformer projections)
};

// y = x W^T + b, W [out, in].
class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias, Generator& gen, LinearInit init = LinearInit::kTorchDefault);
  Tensor forward(const Tensor& x) const;
  Tensor forward_relu(const Tensor& x) const;  // relu(forward(x)), fused where the device allows (linear_relu)
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }

 private:
  Tensor weight_, bias_;
};

// Layer norm over the last dimension, weight 1 and bias 0 at start.
class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-5);
  Tensor forward(const Tensor& x) const;

 private:
  Tensor weight_, bias_;
  double eps_;
};

// Token embedding table [V, D]; rows drawn from N(0, std) and the padding row (if any) zeroed. Its weight
// gradient is row-sparse (only looked-up rows).
class Embedding : public Module {
 public:
  Embedding(int64_t vocab, int64_t dim, double std, Generator& gen, int64_t padding_idx = -1);
  Tensor forward(const Tensor& ids) const;
  const Tensor& weight() const { return weight_; }

 private:
  Tensor weight_;
};

// Inverted dropout with its own generator, so each layer's masks are independent and reproducible.
class Dropout : public Module {
 public:
  Dropout(double p, uint64_t seed);
  Tensor forward(const Tensor& x);
  // forward(relu(x)), fused into one pass (relu_dropout).
  Tensor forward_relu(const Tensor& x);
  // residual + forward(x), fused into one pass (dropout_add).
  Tensor forward_add(const Tensor& residual, const Tensor& x);
  double p() const { return p_; }
  bool active() const { return p_ > 0.0 && is_training(); }  // whether forward() drops anything

 private:
  double p_;
  Generator gen_;
};

}  // namespace kolo::models
