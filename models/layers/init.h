// Weight initialisers used by the layers (the same distributions PyTorch/torchvision/fairseq use).
#pragma once

#include "core/tensor/tensor.h"

namespace kolo::models::init {

// N(0, std).
Tensor normal(const Shape& shape, double std, Generator& gen);
// U(-bound, bound).
Tensor uniform(const Shape& shape, double bound, Generator& gen);
// He init for ReLU nets, torchvision's choice for convolutions: N(0, sqrt(2 / fan_out)) with
// fan_out = out_channels * receptive field.
Tensor kaiming_normal_fan_out(const Shape& shape, int64_t fan_out, Generator& gen);
// Glorot: U(-b, b), b = sqrt(6 / (fan_in + fan_out)); fairseq's choice for Transformer projections.
Tensor xavier_uniform(const Shape& shape, int64_t fan_in, int64_t fan_out, Generator& gen);
// A fresh, independent seed drawn from `gen` (per-layer dropout generators).
uint64_t fork_seed(Generator& gen);

}  // namespace kolo::models::init
