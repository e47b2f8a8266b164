// Launch geometry from the current device's properties, cached per device.
#include "core/ops/cuda/launch_config.h"

#include <algorithm>
#include <array>

#include "core/device/cuda/cuda_check.h"

namespace kolo::cuda {

int sm_count() {
  static std::array<int, 64> cache{};  // 0 = not read yet; benign race (same value written)
  int dev = 0;
  KOLO_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev < 64 && cache[dev]) return cache[dev];
  int n = 0;
  KOLO_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
  if (dev < 64) cache[dev] = n;
  return n;
}

int grid_for(int64_t work, int threads) {
  const int64_t needed = (work + threads - 1) / threads;
  const int64_t cap = static_cast<int64_t>(sm_count()) * 8;
  return static_cast<int>(std::max<int64_t>(1, std::min(needed, cap)));
}

}  // namespace kolo::cuda
