// Closed-form collective test values shared by the MPI and NCCL tests: every rank derives its input and the
// expected result from (seed, rank, index) alone, never by communicating.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "collectives/types.h"
#include "core/tensor/tensor.h"

namespace kolo::testing {

// Small integers: every sum/min/max/product over <= 4 ranks is exact in every dtype, bf16 included.
inline double value(int seed, int rank, int64_t i) {
  return static_cast<double>((seed * 31 + rank * 7 + i * 13) % 17) - 8;
}
inline double pvalue(int seed, int rank, int64_t i) { return static_cast<double>((seed + rank + i) % 3) + 1; }

// This rank's input of n elements (host tensor of dtype dt); `product` picks the positive values.
inline Tensor rank_values(DType dt, int64_t n, int seed, int rank, bool product = false) {
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = product ? pvalue(seed, rank, i) : value(seed, rank, i);
  return Tensor::from_vector(v, {n}).to(dt);
}

// Element i of op reduced over n ranks.
inline double expected(ReduceOp op, DType dt, int seed, int n, int64_t i) {
  const bool prod = op == ReduceOp::Product;
  double acc = prod ? pvalue(seed, 0, i) : value(seed, 0, i);
  for (int r = 1; r < n; ++r) {
    const double v = prod ? pvalue(seed, r, i) : value(seed, r, i);
    switch (op) {
      case ReduceOp::Sum:
      case ReduceOp::Average: acc += v; break;
      case ReduceOp::Min: acc = std::min(acc, v); break;
      case ReduceOp::Max: acc = std::max(acc, v); break;
      case ReduceOp::Product: acc *= v; break;
    }
  }
  if (op == ReduceOp::Average) acc = is_floating(dt) ? acc / n : static_cast<double>(static_cast<int64_t>(acc) / n);
  return acc;
}

inline double tolerance(DType dt) { return dt == DType::BF16 ? 0.02 : dt == DType::F16 ? 2e-3 : 1e-6; }

inline constexpr DType kDTypes[] = {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32, DType::I64};
inline constexpr ReduceOp kOps[] = {ReduceOp::Sum, ReduceOp::Average, ReduceOp::Min, ReduceOp::Max,
                                    ReduceOp::Product};

}  // namespace kolo::testing
