// Timing of GPU work for the benchmarks: median over repetitions of CUDA-event time on the main stream.
#pragma once

#include <algorithm>
#include <functional>
#include <vector>

#include "core/device/cuda/cuda_backend.h"

namespace kolo::bench {

// Milliseconds of `fn`'s work on cuda:0's main stream: 3 warm-up calls, then the median of `reps`.
inline double median_ms(const std::function<void()>& fn, int reps = 20) {
  CudaStream& s = cuda_main_stream(0);
  for (int i = 0; i < 3; ++i) fn();
  std::vector<float> ms;
  for (int i = 0; i < reps; ++i) {
    CudaEvent start(0, true), stop(0, true);
    start.record(s);
    fn();
    stop.record(s);
    stop.synchronize();
    ms.push_back(stop.elapsed_ms(start));
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace kolo::bench
