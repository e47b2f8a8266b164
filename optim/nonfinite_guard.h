// Non-finite gradients: detecting NaN/Inf before an optimizer step (skip the step or stop with an error
// naming the parameter) and fp16-style dynamic loss scaling.
//
// In data-parallel training the check runs after the gradient exchange (DistributedOptimizer::step calls
// it between synchronize() and the inner step): every rank then holds the same reduced gradients, so every
// rank reaches the same verdict without another collective, and a NaN produced on one rank is seen by all
// (Sum/Average propagate it). Skipping on one rank only would make the replicas drift apart.
//
// Dynamic loss scaling (as in mixed-precision training): multiply the loss by scale() before backward so
// small fp16 gradients do not flush to zero; unscale_and_update() then divides the gradients by the scale
// and checks them (Optimizer::unscale_grads: for f16/bf16 parameters the division happens while converting
// into the f32 master gradients, so it cannot underflow in f16). An overflow (any NaN/Inf) skips the step and multiplies the scale by backoff_factor; after
// growth_interval consecutive finite steps the scale grows by growth_factor.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "optim/optimizer.h"

namespace kolo {

enum class NonfinitePolicy {
  Ignore,    // no check (the default: it costs one pass over the gradients)
  SkipStep,  // leave parameters and optimizer state untouched for this step
  Error,     // throw kolo::Error naming the first parameter whose gradient is not finite
};

NonfinitePolicy parse_nonfinite_policy(const std::string& text);  // "ignore" | "skip" | "error"
const char* nonfinite_policy_name(NonfinitePolicy policy);

// Names of the parameters whose current gradient (dense, or the values of a row-sparse one) holds a NaN or
// an Inf, in the optimizer's parameter order. Parameters without a gradient are not reported.
std::vector<std::string> nonfinite_gradients(const Optimizer& opt);

class NonfiniteGuard {
 public:
  explicit NonfiniteGuard(NonfinitePolicy policy = NonfinitePolicy::Ignore) : policy_(policy) {}

  // True when the step may run. SkipStep: false when a gradient is not finite. Error: throws instead.
  bool allow_step(const Optimizer& opt);

  NonfinitePolicy policy() const { return policy_; }
  void set_policy(NonfinitePolicy policy) { policy_ = policy; }
  int64_t skipped_steps() const { return skipped_; }
  // Parameters found non-finite by the last check (empty when it passed or did not run).
  const std::vector<std::string>& last_nonfinite() const { return last_; }

 private:
  NonfinitePolicy policy_;
  int64_t skipped_ = 0;
  std::vector<std::string> last_;
};

struct LossScalerOptions {
  double init_scale = 65536.0;  // 2^16, as torch.cuda.amp.GradScaler
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;  // consecutive finite steps before growing
  double min_scale = 1.0;          // backoff never goes below this
  double max_scale = 16777216.0;   // 2^24: fp16 gradients overflow long before larger scales help
};

class DynamicLossScaler {
 public:
  explicit DynamicLossScaler(LossScalerOptions options = {});

  double scale() const { return scale_; }
  Tensor scale_loss(const Tensor& loss) const;  // loss * scale(), differentiable
  // Divides every gradient by scale() and checks them; on overflow returns false (skip the step) and
  // backs off, otherwise counts toward growth and returns true. Call after the gradient exchange, then
  // opt.step() when it returned true (the step uses the unscaled gradients).
  bool unscale_and_update(Optimizer& opt);

  // Checkpoints: continue with this scale and count of consecutive finite steps (checked like the options).
  void restore(double scale, int64_t good_steps);

  int64_t overflows() const { return overflows_; }
  int64_t good_steps() const { return good_steps_; }  // consecutive finite steps since the last change
  const LossScalerOptions& options() const { return options_; }

 private:
  LossScalerOptions options_;
  double scale_;
  int64_t good_steps_ = 0;
  int64_t overflows_ = 0;
};

}  // namespace kolo
