// --fp32/--bf16/--fp16: flag parsing and the step each precision takes.
#include "examples/common/precision.h"

#include <cstdio>

#include "core/util/error.h"

namespace kolo::examples {

Precision precision_from_flags(bool fp32, bool bf16, bool fp16) {
  KOLO_CHECK(int(fp32) + int(bf16) + int(fp16) <= 1, "--fp32, --bf16 and --fp16 exclude each other");
  return bf16 ? Precision::BF16 : fp16 ? Precision::F16 : Precision::F32;
}

Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::F32;
  if (name == "bf16") return Precision::BF16;
  if (name == "fp16") return Precision::F16;
  KOLO_FAIL("precision '", name, "' is not one of fp32, bf16, fp16");
}

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::F32: return "fp32";
    case Precision::BF16: return "bf16";
    case Precision::F16: return "fp16";
  }
  return "?";
}

std::string precision_banner(Precision p, double loss_scale) {
  if (p == Precision::F32) return "fp32";
  std::string s = std::string(precision_name(p)) + " (f32 master weights";
  if (p == Precision::F16) {
    char buf[64];
    std::snprintf(buf, sizeof buf, ", dynamic loss scale %g", loss_scale);
    s += buf;
  }
  return s + ")";
}

DType model_dtype(Precision p) {
  switch (p) {
    case Precision::F32: return DType::F32;
    case Precision::BF16: return DType::BF16;
    case Precision::F16: return DType::F16;
  }
  return DType::F32;
}

PrecisionStep::PrecisionStep(Precision precision, LossScalerOptions scaler) : precision_(precision), scaler_(scaler) {}

bool PrecisionStep::backward_and_step(const Tensor& loss, DistributedOptimizer& opt) {
  KOLO_CHECK(loss.dtype() == DType::F32 && loss.numel() == 1, "PrecisionStep: the loss must be an f32 scalar, got ",
             loss.describe());
  bool stepped = true;
  if (marker_) marker_("BACKWARD");
  if (precision_ == Precision::F16) {
    scaler_.scale_loss(loss).backward();
    if (marker_) marker_("EXCHANGE_WAIT_AND_UPDATE");
    // After the exchange every rank holds the same reduced gradients, so all reach the same verdict.
    opt.synchronize();
    stepped = scaler_.unscale_and_update(opt.inner());
    if (stepped) opt.inner().step();
  } else {
    loss.backward();
    if (marker_) marker_("EXCHANGE_WAIT_AND_UPDATE");
    stepped = opt.step();
  }
  if (!stepped) ++skipped_;
  return stepped;
}

}  // namespace kolo::examples
