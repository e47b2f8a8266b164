// ResNet-50's 161 parameter tensors (25,557,032 floats) in definition order: the gradient set the allreduce
// benchmarks fuse.
#pragma once

#include <cstdint>
#include <vector>

namespace kolo::bench {

inline std::vector<int64_t> resnet50_sizes() {
  std::vector<int64_t> s = {64 * 3 * 7 * 7, 64, 64};
  const int blocks[] = {3, 4, 6, 3};
  int64_t in = 64;
  for (int stage = 0; stage < 4; ++stage) {
    const int64_t w = 64 << stage, out = w * 4;
    for (int b = 0; b < blocks[stage]; ++b) {
      for (int64_t x : {w * in, w, w, w * w * 9, w, w, out * w, out, out}) s.push_back(x);
      if (b == 0)
        for (int64_t x : {out * in, out, out}) s.push_back(x);
      in = out;
    }
  }
  s.push_back(1000 * 2048);
  s.push_back(1000);
  return s;
}

}  // namespace kolo::bench
