// Shapes and strides as small int64 vectors, with the helpers every op needs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kolo {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& s);
std::string shape_str(const Shape& s);
// Wraps a possibly negative dimension index into [0, ndim); throws naming `op` when out of range.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);
// NumPy broadcasting of two shapes; throws naming `op` when incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace kolo
