// Adam and AdamW (bias-corrected; torch.optim semantics), with the Transformer paper's defaults.
#pragma once

#include "optim/optimizer.h"

namespace kolo {

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  // Vaswani et al. 2017: beta = (0.9, 0.98), eps = 1e-9 (lr comes from the Noam schedule).
  static AdamOptions transformer() {
    AdamOptions o;
    o.beta2 = 0.98;
    o.eps = 1e-9;
    return o;
  }
};

// Adam: weight decay as L2 (added to the gradient). AdamW: decoupled decay (p *= 1 - lr*wd).
class Adam : public Optimizer {
 public:
  Adam(std::vector<ParamGroup> groups, const AdamOptions& opt) : Adam(std::move(groups), opt, false) {}
  Adam(const std::vector<NamedParameter>& params, const AdamOptions& opt) : Adam({make_group(params)}, opt) {}
  const AdamOptions& options() const { return opt_; }

 protected:
  Adam(std::vector<ParamGroup> groups, const AdamOptions& opt, bool decoupled);
  void update_group(const GroupView& view) override;
  bool capturable_rule() const override { return true; }

 private:
  AdamOptions opt_;
  bool decoupled_;
};

class AdamW final : public Adam {
 public:
  AdamW(std::vector<ParamGroup> groups, const AdamOptions& opt) : Adam(std::move(groups), opt, true) {}
  AdamW(const std::vector<NamedParameter>& params, const AdamOptions& opt) : AdamW({make_group(params)}, opt) {}
};

}  // namespace kolo
