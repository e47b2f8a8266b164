// Adam/AdamW update: one fused pass per run of parameters sharing a step count.
#include "optim/adam.h"

#include "optim/update_kernels.h"

namespace kolo {

Adam::Adam(std::vector<ParamGroup> groups, const AdamOptions& opt, bool decoupled)
    : Optimizer(std::move(groups), opt.lr, opt.weight_decay, decoupled ? "AdamW" : "Adam", {"exp_avg", "exp_avg_sq"}),
      opt_(opt),
      decoupled_(decoupled) {
  KOLO_CHECK(opt.beta1 >= 0 && opt.beta1 < 1 && opt.beta2 >= 0 && opt.beta2 < 1, kind(), ": betas must be in [0, 1), got (",
             opt.beta1, ", ", opt.beta2, ")");
  KOLO_CHECK(opt.eps >= 0, kind(), ": eps must be >= 0, got ", opt.eps);
}

void Adam::update_group(const GroupView& v) {
  const FlatBuffer& f = *v.flat;
  for (const Run& r : v.runs) {
    optim_kernels::AdamParams h;
    h.lr = static_cast<float>(v.lr);
    h.beta1 = static_cast<float>(opt_.beta1);
    h.beta2 = static_cast<float>(opt_.beta2);
    h.eps = static_cast<float>(opt_.eps);
    h.weight_decay = static_cast<float>(v.weight_decay);
    h.decoupled = decoupled_;
    h.step = r.step;
    h.lr_at = v.lr_at;
    h.step_at = v.step_at;
    auto sub = [&](const Tensor& t) { return v.run_span(r, t); };
    optim_kernels::adam_update(sub(f.values()), sub(f.grads()), sub((*v.state)[0]), sub((*v.state)[1]), h);
  }
}

}  // namespace kolo
