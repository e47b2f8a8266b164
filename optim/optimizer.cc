// Optimizer base: packing, gradient gathering, clipping, per-parameter step counts and the state dict.
#include "optim/optimizer.h"

#include <cmath>

#include "core/autograd/grad_mode.h"
#include "optim/update_kernels.h"

namespace kolo {

Optimizer::Optimizer(std::vector<ParamGroup> groups, double lr, double weight_decay, std::string kind,
                     std::vector<std::string> state_names)
    : groups_(std::move(groups)),
      state_names_(std::move(state_names)),
      kind_(std::move(kind)),
      lr_(lr),
      default_weight_decay_(weight_decay) {
  KOLO_CHECK(lr >= 0 && std::isfinite(lr), kind_, ": learning rate must be finite and >= 0, got ", lr);
  KOLO_CHECK(weight_decay >= 0, kind_, ": weight_decay must be >= 0, got ", weight_decay);
  for (size_t g = 0; g < groups_.size(); ++g) {
    ParamGroup& grp = groups_[g];
    std::vector<Tensor> tensors;
    for (size_t i = 0; i < grp.params.size(); ++i) {
      NamedParameter& p = grp.params[i];
      if (p.name.empty()) p.name = "group" + std::to_string(g) + ".param" + std::to_string(i);
      KOLO_CHECK(p.tensor.defined(), kind_, ": parameter '", p.name, "' is undefined");
      KOLO_CHECK(p.tensor.dtype() == DType::F32, kind_, ": parameter '", p.name, "' is ", p.tensor.describe(),
                 "; the fused updates handle f32 parameters (keep f32 master weights)");
      KOLO_CHECK(optim_sgd_update_kernel().has(p.tensor.device().type), kind_, ": parameter '", p.name, "' is ",
                 p.tensor.describe(), "; no optimizer update kernels are registered for that device");
      KOLO_CHECK(by_name_.emplace(p.name, Location{g, i}).second, kind_, ": duplicate parameter name '", p.name,
                 "'");
      for (const auto& [other, loc] : by_name_)
        KOLO_CHECK(other == p.name || !groups_[loc.group].params[loc.index].tensor.same(p.tensor), kind_,
                   ": parameter '", p.name, "' is the same tensor as '", other, "'");
      tensors.push_back(p.tensor);
    }
    flats_.emplace_back(tensors, kind_ + " group " + std::to_string(g));
    std::vector<Tensor> st;
    for (size_t k = 0; k < state_names_.size(); ++k) st.push_back(flats_.back().state_like());
    state_.push_back(std::move(st));
    param_steps_.emplace_back(grp.params.size(), 0);
  }
}

void Optimizer::set_lr(double lr) {
  KOLO_CHECK(lr >= 0 && std::isfinite(lr), kind_, ": learning rate must be finite and >= 0, got ", lr);
  lr_ = lr;
}

void Optimizer::zero_grad() {
  for (FlatBuffer& f : flats_) f.bind_grads();
}

std::vector<NamedParameter> Optimizer::named_parameters() const {
  std::vector<NamedParameter> out;
  for (const ParamGroup& g : groups_) out.insert(out.end(), g.params.begin(), g.params.end());
  return out;
}

Optimizer::Location Optimizer::locate(const Tensor& param) const {
  for (size_t g = 0; g < groups_.size(); ++g)
    for (size_t i = 0; i < groups_[g].params.size(); ++i)
      if (groups_[g].params[i].tensor.same(param)) return {g, i};
  KOLO_FAIL(kind_, ": tensor ", param.describe(), " is not one of this optimizer's parameters");
}

Tensor Optimizer::grad_slot(const Tensor& param) const {
  const Location loc = locate(param);
  return flats_[loc.group].grad_slice(loc.index);
}

double global_grad_norm(const Optimizer& opt) {
  double sq = 0.0;
  for (size_t g = 0; g < opt.num_groups(); ++g)
    if (opt.flat(g).numel() > 0) {
      optim_kernels::UpdateDeviceScope on(opt.flat(g).device());
      sq += optim_kernels::sum_squares(opt.flat(g).all(opt.flat(g).grads()));
    }
  return std::sqrt(sq);
}

void Optimizer::step() {
  NoGradGuard ng;
  std::vector<std::vector<bool>> had(groups_.size());
  for (size_t g = 0; g < groups_.size(); ++g) had[g] = flats_[g].gather_grads();
  last_grad_norm_ = global_grad_norm(*this);
  if (clip_norm_ > 0) {
    KOLO_CHECK(std::isfinite(last_grad_norm_), kind_, ": gradient norm is ", last_grad_norm_,
               " at step ", step_ + 1, "; cannot clip a non-finite gradient");
    // torch.nn.utils.clip_grad_norm_: scale by max/(norm + 1e-6) only when that is below 1.
    const double coef = clip_norm_ / (last_grad_norm_ + 1e-6);
    if (coef < 1.0)
      for (FlatBuffer& f : flats_)
        if (f.numel() > 0) {
          optim_kernels::UpdateDeviceScope on(f.device());
          optim_kernels::scale_inplace(f.all(f.grads()), static_cast<float>(coef));
        }
  }
  for (size_t g = 0; g < groups_.size(); ++g) {
    GroupView v;
    v.index = g;
    v.lr = lr_ * groups_[g].lr_mult;
    v.weight_decay = groups_[g].weight_decay.value_or(default_weight_decay_);
    v.exclude_from_adaptation = groups_[g].exclude_from_adaptation;
    v.flat = &flats_[g];
    v.state = &state_[g];
    std::vector<int64_t>& steps = param_steps_[g];
    for (size_t i = 0; i < steps.size(); ++i) {
      if (!had[g][i]) continue;
      ++steps[i];
      if (!v.runs.empty() && v.runs.back().last == i && v.runs.back().step == steps[i])
        v.runs.back().last = i + 1;
      else
        v.runs.push_back({i, i + 1, steps[i]});
    }
    if (v.runs.empty()) continue;
    // The subclass's update rules run on the device holding this group's flat buffers.
    optim_kernels::UpdateDeviceScope on(flats_[g].device());
    update_group(v);
  }
  ++step_;
}

OptimizerState Optimizer::state_dict() const {
  NoGradGuard ng;
  OptimizerState s;
  s.scalars["lr"] = lr_;
  s.scalars["step"] = static_cast<double>(step_);
  for (size_t g = 0; g < groups_.size(); ++g) {
    const FlatBuffer& f = flats_[g];
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      const std::string& name = groups_[g].params[i].name;
      s.scalars[name + "/step"] = static_cast<double>(param_steps_[g][i]);
      const auto& seg = f.segments()[i];
      for (size_t k = 0; k < state_names_.size(); ++k)
        s.tensors[name + "/" + state_names_[k]] =
            state_[g][k].slice(0, seg.offset, seg.offset + seg.numel).clone().view(groups_[g].params[i].tensor.shape());
    }
  }
  return s;
}

void Optimizer::load_state_dict(const OptimizerState& s) {
  NoGradGuard ng;
  auto scalar = [&](const std::string& key) {
    auto it = s.scalars.find(key);
    KOLO_CHECK(it != s.scalars.end(), kind_, ": state dict lacks scalar '", key, "'");
    return it->second;
  };
  // Validate everything before changing anything, so a bad checkpoint leaves the optimizer untouched.
  for (size_t g = 0; g < groups_.size(); ++g)
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      const NamedParameter& p = groups_[g].params[i];
      scalar(p.name + "/step");
      for (const std::string& k : state_names_) {
        auto it = s.tensors.find(p.name + "/" + k);
        KOLO_CHECK(it != s.tensors.end(), kind_, ": state dict lacks '", p.name, "/", k, "'");
        KOLO_CHECK(it->second.shape() == p.tensor.shape(), kind_, ": state '", p.name, "/", k, "' has shape ",
                   shape_str(it->second.shape()), " but the parameter is ", shape_str(p.tensor.shape()));
      }
    }
  lr_ = scalar("lr");
  step_ = static_cast<int64_t>(scalar("step"));
  for (size_t g = 0; g < groups_.size(); ++g)
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      const NamedParameter& p = groups_[g].params[i];
      param_steps_[g][i] = static_cast<int64_t>(scalar(p.name + "/step"));
      const auto& seg = flats_[g].segments()[i];
      for (size_t k = 0; k < state_names_.size(); ++k) {
        Tensor dst = state_[g][k].slice(0, seg.offset, seg.offset + seg.numel).view(p.tensor.shape());
        dst.copy_(s.tensors.at(p.name + "/" + state_names_[k]));
      }
    }
}

}  // namespace kolo
