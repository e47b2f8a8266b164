// KOLO_PROFILE_KERNELS=N for the training programs: the last N steps of a run execute under KernelProfiler,
// and rank 0 prints where their time went (per kernel, device and host, and the time outside kernels).
#pragma once

#include <chrono>
#include <cstdint>
#include <ostream>

#include "core/device/device.h"

namespace kolo::examples {

class StepProfile {
 public:
  // Profiles steps [total_steps - N, total_steps) of a run that starts at `first_step`.
  StepProfile(int64_t first_step, int64_t total_steps, Device device);
  void before_step(int64_t step);  // starts recording at the first profiled step
  void finish(std::ostream* log);  // stops recording and prints the table to `log` (when not null)

 private:
  int64_t steps_ = 0, start_step_ = 0;
  Device device_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace kolo::examples
