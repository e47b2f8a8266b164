// SGD with momentum, Nesterov momentum and L2 weight decay (torch.optim.SGD semantics).
#pragma once

#include "optim/optimizer.h"

namespace kolo {

struct SgdOptions {
  double lr = 0.1;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

class Sgd final : public Optimizer {
 public:
  Sgd(std::vector<ParamGroup> groups, const SgdOptions& opt);
  Sgd(const std::vector<NamedParameter>& params, const SgdOptions& opt) : Sgd({make_group(params)}, opt) {}
  const SgdOptions& options() const { return opt_; }

 protected:
  void update_group(const GroupView& view) override;
  bool capturable_rule() const override { return true; }

 private:
  SgdOptions opt_;
};

}  // namespace kolo
