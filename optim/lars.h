// LARS (You, Gitman, Ginsburg 2017): SGD with momentum whose step per layer is scaled by a trust ratio
// eta * ||w|| / (||g|| + wd * ||w|| + eps), as NVIDIA's LARC without clipping. Groups flagged
// exclude_from_adaptation (biases, batch-norm; see decay_groups) take plain momentum SGD steps.
#pragma once

#include "optim/optimizer.h"

namespace kolo {

struct LarsOptions {
  double lr = 0.1;
  double momentum = 0.9;
  double weight_decay = 0.0;
  double trust_coefficient = 0.001;  // eta
  double eps = 1e-8;
};

class Lars final : public Optimizer {
 public:
  Lars(std::vector<ParamGroup> groups, const LarsOptions& opt);
  const LarsOptions& options() const { return opt_; }
  // The trust ratio used for parameter i of group g in the last step (1 for excluded groups).
  double last_trust_ratio(size_t g, size_t i) const { return trust_[g][i]; }

 protected:
  void update_group(const GroupView& view) override;

 private:
  LarsOptions opt_;
  std::vector<std::vector<double>> trust_;
};

}  // namespace kolo
