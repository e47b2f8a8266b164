// SGD update: one fused pass per run of parameters (see update_kernels.h for the formula).
#include "optim/sgd.h"

#include "optim/update_kernels.h"

namespace kolo {

Sgd::Sgd(std::vector<ParamGroup> groups, const SgdOptions& opt)
    : Optimizer(std::move(groups), opt.lr, opt.weight_decay, "SGD", {"momentum_buffer"}), opt_(opt) {
  KOLO_CHECK(opt.momentum >= 0, "SGD: momentum must be >= 0, got ", opt.momentum);
  KOLO_CHECK(!opt.nesterov || (opt.momentum > 0 && opt.dampening == 0), "SGD: Nesterov momentum needs momentum > 0 ",
             "and dampening 0, got momentum ", opt.momentum, " dampening ", opt.dampening);
}

void Sgd::update_group(const GroupView& v) {
  const FlatBuffer& f = *v.flat;
  for (const Run& r : v.runs) {
    optim_kernels::SgdParams h;
    h.lr = static_cast<float>(v.lr);
    h.momentum = static_cast<float>(opt_.momentum);
    h.dampening = static_cast<float>(opt_.dampening);
    h.weight_decay = static_cast<float>(v.weight_decay);
    h.nesterov = opt_.nesterov;
    h.first_step = r.step == 1;
    h.lr_at = v.lr_at;
    h.step_at = v.step_at;
    auto sub = [&](const Tensor& t) { return v.run_span(r, t); };
    optim_kernels::sgd_update(sub(f.values()), sub(f.grads()), sub((*v.state)[0]), h);
  }
}

}  // namespace kolo
