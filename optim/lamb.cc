// LAMB update: per parameter, one pass computing moments and the direction, one pass applying it.
#include "optim/lamb.h"

#include "optim/update_kernels.h"

namespace kolo {

Lamb::Lamb(std::vector<ParamGroup> groups, const LambOptions& opt)
    : Optimizer(std::move(groups), opt.lr, opt.weight_decay, "LAMB", {"exp_avg", "exp_avg_sq"}), opt_(opt) {
  KOLO_CHECK(opt.beta1 >= 0 && opt.beta1 < 1 && opt.beta2 >= 0 && opt.beta2 < 1, "LAMB: betas must be in [0, 1), got (",
             opt.beta1, ", ", opt.beta2, ")");
  KOLO_CHECK(opt.eps >= 0, "LAMB: eps must be >= 0, got ", opt.eps);
  // f32 like the buffers the rule works on (the masters of a bf16/f16 group), not the model's dtype.
  for (size_t g = 0; g < num_groups(); ++g) scratch_.push_back(update_flat(g).state_like());
}

void Lamb::update_group(const GroupView& v) {
  const FlatBuffer& f = *v.flat;
  for (const Run& r : v.runs)
    for (size_t i = r.first; i < r.last; ++i) {
      optim_kernels::LambParams h;
      h.lr = static_cast<float>(v.lr);
      h.beta1 = static_cast<float>(opt_.beta1);
      h.beta2 = static_cast<float>(opt_.beta2);
      h.eps = static_cast<float>(opt_.eps);
      h.weight_decay = static_cast<float>(v.weight_decay);
      h.adapt = !v.exclude_from_adaptation;
      h.step = r.step;
      optim_kernels::lamb_update(f.span(f.values(), i), f.span(f.grads(), i), f.span((*v.state)[0], i),
                                 f.span((*v.state)[1], i), f.span(scratch_[v.index], i), h);
    }
}

}  // namespace kolo
