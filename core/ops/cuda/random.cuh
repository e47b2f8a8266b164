// The CPU Generator's counter hash on the device, so random draws (fills, dropout keep decisions) match the
// CPU element for element: uniform01(seed, counter) == Generator::uniform01(seed, counter).
#pragma once

#include <cstdint>

namespace kolo::cuda {

// splitmix64 over a (seed, counter) mix, as Generator::hash.
__device__ __forceinline__ uint64_t counter_hash(uint64_t seed, uint64_t counter) {
  uint64_t z = seed * 0x9e3779b97f4a7c15ull + counter + 0x632be59bd9b4e019ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  z = (z ^ (z >> 29)) * 0xbf58476d1ce4e5b9ull;
  return z ^ (z >> 32);
}

__device__ __forceinline__ float uniform01(uint64_t seed, uint64_t counter) {
  return static_cast<float>(counter_hash(seed, counter) >> 40) * (1.0f / 16777216.0f);
}

// Inverted dropout's factor for the draw at `counter`: keep_scale (1 / (1 - p)) when kept, 0 when dropped,
// 1 when p <= 0 (no draw).
__device__ __forceinline__ float dropout_factor(uint64_t seed, uint64_t counter, float p, float keep_scale) {
  if (p <= 0.0f) return 1.0f;
  return uniform01(seed, counter) >= p ? keep_scale : 0.0f;
}

}  // namespace kolo::cuda
