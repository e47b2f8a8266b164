// Shared helpers of the GPU tests: skip without a device, random inputs, and CPU-vs-GPU comparison with
// per-dtype tolerances (relative error in the 2-norm, NaN never passes).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/device/cuda/cuda_backend.h"
#include "core/tensor/tensor.h"

namespace kolo::testing {

class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible; GPU tests skipped";
  }
  Device gpu() const { return Device::cuda(0); }
};

// Uniform [lo, hi) in `dtype` on the CPU (integers: truncated from f32 draws), deterministic per seed.
inline Tensor random_cpu(const Shape& shape, DType dtype, double lo, double hi, uint64_t seed) {
  Generator gen(seed);
  if (is_floating(dtype)) return Tensor::uniform(shape, lo, hi, gen, dtype);
  return Tensor::uniform(shape, lo, hi, gen, DType::F64).to(dtype);
}

inline double tolerance(DType t) {
  switch (t) {
    case DType::F64: return 1e-12;
    case DType::F32: return 2e-6;
    case DType::BF16: return 1e-2;
    case DType::F16: return 2e-3;
    default: return 0.0;
  }
}

// ||got - want|| / max(||want||, floor) (absolute when that is 0); +inf if shapes differ or NaN appears in got
// where want has none. A floor keeps a tensor that is ~0 on both sides (rounding noise) from failing on its
// relative error alone.
inline double relative_error(const Tensor& got, const Tensor& want, double floor = 0) {
  if (got.shape() != want.shape()) return INFINITY;
  const std::vector<double> g = got.to(Device::cpu()).to_vector<double>();
  const std::vector<double> w = want.to(Device::cpu()).to_vector<double>();
  double num = 0, den = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(w[i]) != std::isnan(g[i])) return INFINITY;
    if (std::isnan(w[i])) continue;
    if (std::isinf(w[i]) || std::isinf(g[i])) {
      if (g[i] != w[i]) return INFINITY;
      continue;
    }
    num += (g[i] - w[i]) * (g[i] - w[i]);
    den += w[i] * w[i];
  }
  den = std::max(den, floor * floor);
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

#define EXPECT_CLOSE(got, want, tol, what) \
  EXPECT_LE(::kolo::testing::relative_error((got), (want)), (tol)) << (what)

}  // namespace kolo::testing
