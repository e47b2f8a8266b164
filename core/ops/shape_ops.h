// Differentiable shape ops that move data: concatenation, row gathers/scatters.
#pragma once

#include <vector>

#include "core/tensor/tensor.h"

namespace kolo {

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim);
// y[indices[i], ...] += values[i, ...] in place (not recorded).
void index_add_rows_(Tensor& y, const Tensor& indices, const Tensor& values);

}  // namespace kolo
