// The training programs' numeric precision: --fp32, --bf16 or --fp16, and the backward + optimizer step
// each implies.
//
// bf16/fp16: the model's parameters (and so its activations and gradients) are cast to the low dtype, the
// optimizer keeps f32 master weights (optim/master_weights.h) and batch-norm running statistics stay f32
// (models::Module::cast_parameters). Inputs are cast to the model dtype; logits are cast to f32 before the
// loss, so the loss value, its mean and the loss scale's seed gradient are f32. fp16 adds dynamic loss
// scaling: an overflowing step is skipped on every rank (the check runs after the gradient exchange) and the
// scale backs off; bf16 has f32's exponent range and needs no scaling.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "core/tensor/tensor.h"
#include "optim/distributed_optimizer.h"
#include "optim/nonfinite_guard.h"

namespace kolo::examples {

enum class Precision { F32, BF16, F16 };

// From the three exclusive flags (none: f32); throws when more than one is given.
Precision precision_from_flags(bool fp32, bool bf16, bool fp16);
Precision parse_precision(const std::string& name);  // "fp32" | "bf16" | "fp16"
const char* precision_name(Precision p);              // as the flags: fp32, bf16, fp16
// The banner's words: "fp32", "bf16 (f32 master weights)", "fp16 (f32 master weights, loss scale 65536)".
std::string precision_banner(Precision p, double loss_scale);
DType model_dtype(Precision p);

// One training step's backward and update in the run's precision.
class PrecisionStep {
 public:
  explicit PrecisionStep(Precision precision, LossScalerOptions scaler = {});

  Precision precision() const { return precision_; }
  // backward of `loss` (f32 scalar), gradient exchange and the inner step; false when the step was skipped
  // (fp16 overflow, or the optimizer's non-finite policy).
  bool backward_and_step(const Tensor& loss, DistributedOptimizer& opt);
  // Called with "BACKWARD" before the backward pass and "EXCHANGE_WAIT_AND_UPDATE" after it (StepTimeline).
  void set_phase_marker(std::function<void(const char*)> marker) { marker_ = std::move(marker); }

  double loss_scale() const { return precision_ == Precision::F16 ? scaler_.scale() : 1.0; }
  int64_t skipped_steps() const { return skipped_; }
  // fp16: the loss scaler, whose scale and finite-step count checkpoints carry; null otherwise.
  DynamicLossScaler* loss_scaler() { return precision_ == Precision::F16 ? &scaler_ : nullptr; }

 private:
  Precision precision_;
  DynamicLossScaler scaler_;
  int64_t skipped_ = 0;
  std::function<void(const char*)> marker_;
};

}  // namespace kolo::examples
