// Differentiable reductions and decoding helpers (argmax, top-k).
#pragma once

#include <vector>

#include "core/tensor/tensor.h"

namespace kolo {

Tensor sum(const Tensor& x);  // all elements -> scalar
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor amax(const Tensor& x, int64_t dim, bool keepdim = false);  // gradient flows to (all) maxima
Tensor argmax(const Tensor& x, int64_t dim);                       // i64, not differentiable
// Top-k along the last dimension: values (x's dtype) and indices (i64), sorted descending.
std::pair<Tensor, Tensor> topk(const Tensor& x, int64_t k);

}  // namespace kolo
