// LARS update: per-parameter norms, then one fused momentum-SGD pass with the trust ratio folded in.
#include "optim/lars.h"

#include <cmath>

#include "optim/update_kernels.h"

namespace kolo {

Lars::Lars(std::vector<ParamGroup> groups, const LarsOptions& opt)
    : Optimizer(std::move(groups), opt.lr, opt.weight_decay, "LARS", {"momentum_buffer"}), opt_(opt) {
  KOLO_CHECK(opt.trust_coefficient > 0, "LARS: trust_coefficient must be > 0, got ", opt.trust_coefficient);
  KOLO_CHECK(opt.momentum >= 0, "LARS: momentum must be >= 0, got ", opt.momentum);
  for (size_t g = 0; g < num_groups(); ++g) trust_.emplace_back(group(g).params.size(), 1.0);
}

void Lars::update_group(const GroupView& v) {
  const FlatBuffer& f = *v.flat;
  for (const Run& r : v.runs) {
    for (size_t i = r.first; i < r.last; ++i) {
      const auto p = f.span(f.values(), i);
      const auto g = f.span(f.grads(), i);
      double trust = 1.0;
      if (!v.exclude_from_adaptation) {
        const double pn = std::sqrt(optim_kernels::sum_squares(p));
        const double gn = std::sqrt(optim_kernels::sum_squares(g));
        if (pn > 0 && gn > 0) trust = opt_.trust_coefficient * pn / (gn + v.weight_decay * pn + opt_.eps);
      }
      trust_[v.index][i] = trust;
      optim_kernels::SgdParams h;
      h.lr = static_cast<float>(v.lr);
      h.momentum = static_cast<float>(opt_.momentum);
      h.weight_decay = static_cast<float>(v.weight_decay);
      h.first_step = r.step == 1;
      h.trust = static_cast<float>(trust);
      optim_kernels::sgd_update(p, g, f.span((*v.state)[0], i), h);
    }
  }
}

}  // namespace kolo
