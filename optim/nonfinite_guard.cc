// Non-finite gradient checks and dynamic loss scaling (see nonfinite_guard.h).
#include "optim/nonfinite_guard.h"

#include <algorithm>

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "core/util/error.h"

namespace kolo {

NonfinitePolicy parse_nonfinite_policy(const std::string& text) {
  if (text == "ignore") return NonfinitePolicy::Ignore;
  if (text == "skip") return NonfinitePolicy::SkipStep;
  if (text == "error") return NonfinitePolicy::Error;
  KOLO_FAIL("non-finite gradient policy '", text, "' is not one of ignore, skip, error");
}

const char* nonfinite_policy_name(NonfinitePolicy policy) {
  switch (policy) {
    case NonfinitePolicy::Ignore: return "ignore";
    case NonfinitePolicy::SkipStep: return "skip";
    case NonfinitePolicy::Error: return "error";
  }
  return "?";
}

namespace {

bool grad_finite(const Tensor& g) {
  if (g.is_sparse()) return all_finite(g.sparse_values());
  return all_finite(g);
}

}  // namespace

std::vector<std::string> nonfinite_gradients(const Optimizer& opt) {
  NoGradGuard ng;
  std::vector<std::string> bad;
  for (const NamedParameter& p : opt.named_parameters()) {
    const Tensor g = p.tensor.grad();
    if (g.defined() && !grad_finite(g)) bad.push_back(p.name);
  }
  return bad;
}

bool NonfiniteGuard::allow_step(const Optimizer& opt) {
  last_.clear();
  if (policy_ == NonfinitePolicy::Ignore) return true;
  last_ = nonfinite_gradients(opt);
  if (last_.empty()) return true;
  if (policy_ == NonfinitePolicy::Error) {
    std::string others;
    for (size_t i = 1; i < last_.size(); ++i) others += (i > 1 ? ", " : "") + last_[i];
    const Tensor g = [&] {
      for (const NamedParameter& p : opt.named_parameters())
        if (p.name == last_[0]) return p.tensor.grad();
      return Tensor();
    }();
    KOLO_FAIL(opt.kind(), ": gradient of parameter '", last_[0], "' ", g.defined() ? g.describe() : "",
              " contains NaN or Inf at step ", opt.step_count() + 1,
              others.empty() ? "" : " (also: " + others + ")",
              "; stopping (non-finite gradient policy 'error'; 'skip' would skip the step)");
  }
  ++skipped_;
  return false;
}

DynamicLossScaler::DynamicLossScaler(LossScalerOptions options) : options_(options), scale_(options.init_scale) {
  KOLO_CHECK(options_.init_scale > 0 && options_.min_scale > 0 && options_.min_scale <= options_.max_scale,
             "DynamicLossScaler: need 0 < min_scale <= max_scale and init_scale > 0, got init ",
             options_.init_scale, ", min ", options_.min_scale, ", max ", options_.max_scale);
  KOLO_CHECK(options_.growth_factor >= 1, "DynamicLossScaler: growth_factor must be >= 1, got ",
             options_.growth_factor);
  KOLO_CHECK(options_.backoff_factor > 0 && options_.backoff_factor < 1,
             "DynamicLossScaler: backoff_factor must be in (0, 1), got ", options_.backoff_factor);
  KOLO_CHECK(options_.growth_interval >= 1, "DynamicLossScaler: growth_interval must be >= 1, got ",
             options_.growth_interval);
  scale_ = std::clamp(scale_, options_.min_scale, options_.max_scale);
}

void DynamicLossScaler::restore(double scale, int64_t good_steps) {
  KOLO_CHECK(scale >= options_.min_scale && scale <= options_.max_scale && good_steps >= 0 &&
                 good_steps < options_.growth_interval,
             "DynamicLossScaler: cannot restore scale ", scale, " with ", good_steps, " finite steps (scale must be in [",
             options_.min_scale, ", ", options_.max_scale, "], steps below the growth interval ",
             options_.growth_interval, ")");
  scale_ = scale;
  good_steps_ = good_steps;
}

Tensor DynamicLossScaler::scale_loss(const Tensor& loss) const { return kolo::scale(loss, scale_); }

bool DynamicLossScaler::unscale_and_update(Optimizer& opt) {
  // One pass per group: unscale into the f32 buffers the update reads (for bf16/f16 parameters their f32
  // master gradients, so small gradients are divided after leaving the low dtype, not before) and check.
  const bool finite = opt.unscale_grads(1.0 / scale_);
  if (!finite) {
    ++overflows_;
    good_steps_ = 0;
    scale_ = std::max(options_.min_scale, scale_ * options_.backoff_factor);
    return false;
  }
  if (++good_steps_ >= options_.growth_interval) {
    good_steps_ = 0;
    scale_ = std::min(options_.max_scale, scale_ * options_.growth_factor);
  }
  return true;
}

}  // namespace kolo
