// Learning-rate schedules as small composable objects: lr = (*schedule)(step), steps counted from 0
// (step 0 is before any update; the Noam and inverse-sqrt forms are 0 there). Each formula is written
// next to its factory and tested value by value in tests/optim/test_lr_schedule.cc.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kolo {

class LrSchedule {
 public:
  virtual ~LrSchedule() = default;
  virtual double operator()(int64_t step) const = 0;
  virtual std::string describe() const = 0;  // the formula with its constants, for tables and logs
};
using LrSchedulePtr = std::shared_ptr<const LrSchedule>;

// lr = value.
LrSchedulePtr constant_lr(double value);

// step < warmup: start + (after(warmup) - start) * step / warmup; else after(step). Goyal et al.'s gradual
// warmup is linear_warmup(5 epochs, ..., start = small-batch lr).
LrSchedulePtr linear_warmup(int64_t warmup_steps, LrSchedulePtr after, double start_lr = 0.0);

// lr = peak * sqrt(warmup / step) (the decay half; use warmup_inverse_sqrt for the full schedule).
LrSchedulePtr inverse_sqrt_decay(double peak, int64_t warmup_steps);

// lr = peak * min(step / warmup, sqrt(warmup / step)): linear warmup then inverse-square-root decay.
LrSchedulePtr warmup_inverse_sqrt(double peak, int64_t warmup_steps);

// Vaswani et al.: lr = factor * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5); 0 at step 0. Equal to
// warmup_inverse_sqrt with peak = factor * (d_model * warmup)^-0.5.
LrSchedulePtr noam(int64_t d_model, int64_t warmup_steps, double factor = 1.0);

// lr = base * factor^(number of boundaries <= step).
LrSchedulePtr step_decay(double base, std::vector<int64_t> boundaries, double factor = 0.1);

// Goyal et al. 2017 (ImageNet in 1 hour): linear warmup from start_lr to base over warmup_epochs, then
// x0.1 at epochs 30, 60, 80 (by default). base is usually linear_scaling_rule(0.1, global_batch, 256).
LrSchedulePtr goyal_step_decay(double base, double start_lr, int64_t steps_per_epoch, int64_t warmup_epochs = 5,
                               std::vector<int64_t> decay_epochs = {30, 60, 80}, double factor = 0.1);

// lr = end + (base - end) * (1 - min(step, total) / total)^power.
LrSchedulePtr polynomial_decay(double base, double end, int64_t total_steps, double power = 1.0);

// lr = min_lr + (base - min_lr) * (1 + cos(pi * min(step, total) / total)) / 2.
LrSchedulePtr cosine_decay(double base, int64_t total_steps, double min_lr = 0.0);

// lr = s * inner(step).
LrSchedulePtr scaled(LrSchedulePtr inner, double s);

// Goyal et al.'s linear scaling rule: lr = base_lr * global_batch / base_batch.
double linear_scaling_rule(double base_lr, int64_t global_batch, int64_t base_batch);

}  // namespace kolo
