// Device, optimizer and schedule selection for the training programs.
#include "examples/common/run_setup.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/device/device_backend.h"
#include "core/util/error.h"
#include "optim/adam.h"
#include "optim/lars.h"
#include "optim/param_group.h"
#include "optim/sgd.h"

namespace kolo::examples {

Device select_device(const std::string& flag, const Runtime& runtime) {
  if (flag == "cpu") return Device::cpu();
  if (flag == "auto" && !device_available(DeviceType::CUDA)) return Device::cpu();
  if (flag == "auto" || flag == "cuda") {
    KOLO_CHECK(device_available(DeviceType::CUDA), "--device cuda: this build has no CUDA or no GPU is visible");
    const int count = device_backend(DeviceType::CUDA).device_count();
    return Device::cuda(runtime.local_rank() % count);
  }
  return parse_device(flag);
}

std::unique_ptr<Optimizer> make_optimizer(const std::vector<NamedParameter>& params, const OptimizerFlags& f) {
  std::vector<ParamGroup> groups = decay_groups(params);
  if (f.name == "sgd") {
    return std::make_unique<Sgd>(std::move(groups), SgdOptions{.lr = f.lr, .momentum = f.momentum,
                                                               .weight_decay = f.weight_decay});
  }
  if (f.name == "lars") {
    return std::make_unique<Lars>(std::move(groups),
                                  LarsOptions{.lr = f.lr, .momentum = f.momentum, .weight_decay = f.weight_decay});
  }
  if (f.name == "adam") {
    return std::make_unique<Adam>(std::move(groups), AdamOptions{.lr = f.lr, .beta1 = f.beta1, .beta2 = f.beta2,
                                                                 .eps = f.eps, .weight_decay = f.weight_decay});
  }
  KOLO_FAIL("--optimizer '", f.name, "': expected sgd, lars or adam");
}

LrSchedulePtr make_schedule(const ScheduleFlags& f) {
  KOLO_CHECK(f.warmup_steps >= 0, "--warmup: ", f.warmup_steps, " steps must not be negative");
  KOLO_CHECK(f.peak > 0 && std::isfinite(f.peak), "--lr: ", f.peak, " must be a positive number");
  KOLO_CHECK(f.warmup_from >= 0, "lr warmup start ", f.warmup_from, " must not be negative");
  if (f.name == "inverse_sqrt") {
    KOLO_CHECK(f.warmup_steps > 0, "--lr_schedule inverse_sqrt needs warmup steps > 0");
    return warmup_inverse_sqrt(f.peak, f.warmup_steps);
  }
  if (f.name == "noam") {
    KOLO_CHECK(f.warmup_steps > 0, "--lr_schedule noam needs warmup steps > 0");
    // Scaled so that the peak (reached at the end of warmup) is --lr, as fairseq does.
    return noam(f.d_model, f.warmup_steps, f.peak * std::sqrt(static_cast<double>(f.d_model * f.warmup_steps)));
  }
  if (f.name == "goyal") {
    // goyal_step_decay's shape with the warmup counted in steps, so fractional warmup epochs work.
    KOLO_CHECK(f.steps_per_epoch > 0, "--lr_schedule goyal needs steps per epoch > 0");
    std::vector<int64_t> boundaries;
    for (int64_t e : f.decay_epochs) boundaries.push_back(e * f.steps_per_epoch);
    LrSchedulePtr decay = step_decay(f.peak, boundaries, 0.1);
    return f.warmup_steps > 0 ? linear_warmup(f.warmup_steps, decay, f.warmup_from) : decay;
  }
  LrSchedulePtr after;
  if (f.name == "cosine") {
    KOLO_CHECK(f.warmup_steps < f.total_steps, "--lr_schedule cosine: ", f.warmup_steps,
               " warmup steps leave none of the ", f.total_steps, " steps to decay over");
    after = cosine_decay(f.peak, f.total_steps - f.warmup_steps);
  } else if (f.name == "constant") {
    after = constant_lr(f.peak);
  } else {
    KOLO_FAIL("--lr_schedule '", f.name, "': expected goyal, cosine, constant, inverse_sqrt or noam");
  }
  if (f.warmup_steps == 0) return after;
  if (f.name == "cosine") {
    // The cosine part starts counting where the warmup ends.
    struct Shifted : LrSchedule {
      LrSchedulePtr inner;
      int64_t by;
      double operator()(int64_t step) const override { return (*inner)(std::max<int64_t>(0, step - by)); }
      std::string describe() const override { return inner->describe() + " (from step " + std::to_string(by) + ")"; }
    };
    auto s = std::make_shared<Shifted>();
    s->inner = after;
    s->by = f.warmup_steps;
    after = s;
  }
  return linear_warmup(f.warmup_steps, after, 0.0);
}

void print_device_memory(std::ostream& os, Device device) {
  if (device.is_cpu()) return;
  const MemoryStats m = device_backend(device.type).allocator(device.index).stats();
  // Allocations the cache did not serve went to the device (cudaMalloc); a count that grows with the steps
  // means the cache churns, and segments given back on the way (cudaFree) wait for the whole device.
  char line[224];
  std::snprintf(line, sizeof line,
                "peak device memory: allocated %.2f GiB, reserved %.2f GiB; %llu allocations, %llu not from the "
                "cache\n",
                static_cast<double>(m.peak) / (1 << 30), static_cast<double>(m.reserved) / (1 << 30),
                static_cast<unsigned long long>(m.allocations),
                static_cast<unsigned long long>(m.allocations - m.cache_hits));
  os << line << std::flush;
}

void synchronize_device(Device device) {
  if (!device.is_cpu()) device_backend(device.type).current_stream(device.index).synchronize();
}

}  // namespace kolo::examples
