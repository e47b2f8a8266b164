// LAMB (You et al. 2019, "Large Batch Optimization for Deep Learning"): Adam's bias-corrected direction
// plus decoupled weight decay, scaled per layer by the trust ratio ||w|| / ||update||. Groups flagged
// exclude_from_adaptation use a trust ratio of 1 (an AdamW-like step).
#pragma once

#include "optim/optimizer.h"

namespace kolo {

struct LambOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-6;
  double weight_decay = 0.01;
};

class Lamb final : public Optimizer {
 public:
  Lamb(std::vector<ParamGroup> groups, const LambOptions& opt);
  const LambOptions& options() const { return opt_; }

 protected:
  void update_group(const GroupView& view) override;

 private:
  LambOptions opt_;
  std::vector<Tensor> scratch_;  // per group: the update direction before the trust ratio
};

}  // namespace kolo
