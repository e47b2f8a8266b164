// Kernel profile of a training run's last steps.
#include "examples/common/step_profile.h"

#include <algorithm>

#include "core/device/device_backend.h"
#include "core/ops/kernel_profiler.h"
#include "core/util/env.h"

namespace kolo::examples {
namespace {

// The profiled span must hold only its own steps' device work.
void drain(Device device) {
  if (!device.is_cpu()) device_backend(device.type).synchronize(device.index);
}

}  // namespace

StepProfile::StepProfile(int64_t first_step, int64_t total_steps, Device device)
    : steps_(std::clamp<int64_t>(env::get_int("KOLO_PROFILE_KERNELS", 0), 0, total_steps - first_step)),
      start_step_(total_steps - steps_),
      device_(device) {}

void StepProfile::before_step(int64_t step) {
  if (steps_ == 0 || step != start_step_) return;
  drain(device_);
  KernelProfiler::start();
  start_ = std::chrono::steady_clock::now();
}

void StepProfile::finish(std::ostream* log) {
  if (!KernelProfiler::active()) return;
  drain(device_);
  const double wall = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_).count();
  const std::vector<KernelStat> stats = KernelProfiler::stop();
  if (log) *log << "kernel profile of the last " << steps_ << " steps:\n" << KernelProfiler::format(stats, wall);
}

}  // namespace kolo::examples
