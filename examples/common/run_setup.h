// What both training programs share before the first step: the device each rank trains on, the optimizer
// and learning-rate schedule named on the command line.
#pragma once

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "collectives/runtime.h"
#include "core/device/device.h"
#include "optim/lr_schedule.h"
#include "optim/optimizer.h"

namespace kolo::examples {

// "cpu", "cuda", "cuda:N" or "auto" (a GPU when one is present). A plain "cuda"/"auto" picks the GPU of this
// rank's local rank, so N ranks on one host use N GPUs.
Device select_device(const std::string& flag, const Runtime& runtime);
// "peak device memory: ..." from the device's caching allocator (this rank), comparable to PyTorch's
// max_memory_allocated / max_memory_reserved; nothing for the CPU.
void print_device_memory(std::ostream& os, Device device);
// Waits on the host until the work queued on this thread's current stream of `device` has run.
void synchronize_device(Device device);

struct OptimizerFlags {
  std::string name = "sgd";  // sgd | lars | adam
  double lr = 0.1;           // the value set before the schedule takes over (schedules call set_lr)
  double momentum = 0.9;
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

// Biases and normalisation parameters get no weight decay (and no LARS adaptation), as in Goyal et al.
std::unique_ptr<Optimizer> make_optimizer(const std::vector<NamedParameter>& params, const OptimizerFlags& flags);

struct ScheduleFlags {
  std::string name = "constant";  // goyal | cosine | constant | step | inverse_sqrt | noam
  double peak = 0.1;              // base/peak lr (after the linear scaling rule, for images)
  double warmup_from = 0;         // goyal: the lr warmup starts from (Goyal et al.: the small-batch lr, --lr)
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;        // cosine: steps to decay over
  int64_t steps_per_epoch = 1;    // goyal: epoch boundaries
  int64_t d_model = 512;          // noam
  std::vector<int64_t> decay_epochs{30, 60, 80};  // goyal
};

LrSchedulePtr make_schedule(const ScheduleFlags& flags);

}  // namespace kolo::examples
