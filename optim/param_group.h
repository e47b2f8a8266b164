// Named parameters and parameter groups: what an optimizer updates and with which per-group settings.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor/tensor.h"

namespace kolo {

// A parameter with a stable name: names key the optimizer state in checkpoints and the collectives'
// negotiation, so they must be equal on every rank and unique within an optimizer.
struct NamedParameter {
  std::string name;
  Tensor tensor;
};

struct ParamGroup {
  std::vector<NamedParameter> params;
  double lr_mult = 1.0;                 // this group's lr = optimizer lr * lr_mult
  std::optional<double> weight_decay;   // unset: the optimizer's default
  bool exclude_from_adaptation = false; // LARS/LAMB: no trust ratio (biases, normalisation parameters)
};

// One group with the optimizer's defaults.
ParamGroup make_group(std::vector<NamedParameter> params);

// The usual rule for "no weight decay, no layer adaptation": 1-D tensors (biases, norm scales/shifts).
bool is_bias_or_norm(const NamedParameter& p);

// Splits parameters into {decayed, excluded} groups by `exclude` (default is_bias_or_norm); the excluded
// group gets weight_decay 0 and exclude_from_adaptation. Empty groups are dropped.
std::vector<ParamGroup> decay_groups(const std::vector<NamedParameter>& params,
                                     const std::function<bool(const NamedParameter&)>& exclude = is_bias_or_norm);

}  // namespace kolo
