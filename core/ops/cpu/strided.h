// Row-major iteration over up to two strided operands, innermost dimension as a tight loop, parallel over
// the outer index with OpenMP. Used by CPU kernels that accept non-contiguous views.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor/shape.h"

namespace kolo::cpu {

// Calls fn(off_a, off_b, inner_len, inner_stride_a, inner_stride_b) for every innermost row.
template <typename Fn>
void for_each_row(const Shape& shape, const Shape& sa, const Shape& sb, Fn&& fn) {
  const int64_t nd = static_cast<int64_t>(shape.size());
  if (nd == 0) {
    fn(int64_t{0}, int64_t{0}, int64_t{1}, int64_t{1}, int64_t{1});
    return;
  }
  const int64_t inner = shape[nd - 1];
  const int64_t outer = shape_numel(shape) / (inner == 0 ? 1 : inner);
  if (inner == 0 || outer == 0) return;
#pragma omp parallel for schedule(static) if (outer * inner > 32768)
  for (int64_t o = 0; o < outer; ++o) {
    int64_t rem = o, off_a = 0, off_b = 0;
    for (int64_t d = nd - 2; d >= 0; --d) {
      const int64_t i = rem % shape[d];
      rem /= shape[d];
      off_a += i * sa[d];
      off_b += i * sb[d];
    }
    fn(off_a, off_b, inner, sa[nd - 1], sb[nd - 1]);
  }
}

}  // namespace kolo::cpu

namespace kolo::cpu {

// Three-operand variant: fn(off_a, off_b, off_c, n, stride_a, stride_b, stride_c).
template <typename Fn>
void for_each_row3(const Shape& shape, const Shape& sa, const Shape& sb, const Shape& sc, Fn&& fn) {
  const int64_t nd = static_cast<int64_t>(shape.size());
  if (nd == 0) {
    fn(int64_t{0}, int64_t{0}, int64_t{0}, int64_t{1}, int64_t{1}, int64_t{1}, int64_t{1});
    return;
  }
  const int64_t inner = shape[nd - 1];
  const int64_t outer = inner == 0 ? 0 : shape_numel(shape) / inner;
  if (outer == 0) return;
#pragma omp parallel for schedule(static) if (outer * inner > 32768)
  for (int64_t o = 0; o < outer; ++o) {
    int64_t rem = o, a = 0, b = 0, c = 0;
    for (int64_t d = nd - 2; d >= 0; --d) {
      const int64_t i = rem % shape[d];
      rem /= shape[d];
      a += i * sa[d];
      b += i * sb[d];
      c += i * sc[d];
    }
    fn(a, b, c, inner, sa[nd - 1], sb[nd - 1], sc[nd - 1]);
  }
}

}  // namespace kolo::cpu
