// Host-built description of up to three strided operands sharing one shape, passed by value to CUDA
// kernels, which turn a linear element index into each operand's offset.
//
// Dimensions of size 1 are dropped and neighbours that are contiguous in every operand are merged first,
// so most views (a transposed matrix, a broadcast bias) reach the kernel with one to three dimensions.
#pragma once

#include <array>
#include <cstdint>

#include "core/tensor/shape.h"
#include "core/util/error.h"

namespace kolo::cuda {

constexpr int kMaxDims = 10;

template <int N>
struct StridedIndexer {
  int32_t ndim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[N][kMaxDims] = {};
};

template <int N>
StridedIndexer<N> make_indexer(const Shape& shape, const std::array<const Shape*, N>& strides) {
  StridedIndexer<N> ix;
  // Collect non-trivial dims, innermost last.
  int64_t sz[64];
  int64_t st[N][64];
  int nd = 0;
  KOLO_CHECK(shape.size() <= 64, "strided CUDA kernel: ", shape.size(), " dimensions");
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    sz[nd] = shape[d];
    for (int k = 0; k < N; ++k) st[k][nd] = (*strides[k])[d];
    ++nd;
  }
  // Merge dim d-1 into d when every operand steps over d exactly once per step of d-1.
  int out = 0;
  for (int d = 0; d < nd; ++d) {
    if (out > 0) {
      bool mergeable = true;
      for (int k = 0; k < N; ++k) mergeable &= ix.strides[k][out - 1] == st[k][d] * sz[d];
      if (mergeable) {
        ix.sizes[out - 1] *= sz[d];
        for (int k = 0; k < N; ++k) ix.strides[k][out - 1] = st[k][d];
        continue;
      }
    }
    KOLO_CHECK(out < kMaxDims, "strided CUDA kernel: more than ", kMaxDims, " non-mergeable dimensions in ",
               shape_str(shape));
    ix.sizes[out] = sz[d];
    for (int k = 0; k < N; ++k) ix.strides[k][out] = st[k][d];
    ++out;
  }
  ix.ndim = out;
  return ix;
}

}  // namespace kolo::cuda
