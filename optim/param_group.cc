// Grouping helpers for parameter-group optimizers.
#include "optim/param_group.h"

namespace kolo {

ParamGroup make_group(std::vector<NamedParameter> params) {
  ParamGroup g;
  g.params = std::move(params);
  return g;
}

bool is_bias_or_norm(const NamedParameter& p) { return p.tensor.dim() <= 1; }

std::vector<ParamGroup> decay_groups(const std::vector<NamedParameter>& params,
                                     const std::function<bool(const NamedParameter&)>& exclude) {
  ParamGroup decayed, excluded;
  excluded.weight_decay = 0.0;
  excluded.exclude_from_adaptation = true;
  for (const NamedParameter& p : params) (exclude(p) ? excluded : decayed).params.push_back(p);
  std::vector<ParamGroup> out;
  if (!decayed.params.empty()) out.push_back(std::move(decayed));
  if (!excluded.params.empty()) out.push_back(std::move(excluded));
  return out;
}

}  // namespace kolo
