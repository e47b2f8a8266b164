// Optimizer base: packing, gradient gathering, clipping, per-parameter step counts and the state dict.
#include "optim/optimizer.h"

#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
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
  KOLO_CHECK(weight_decay >= 0 && std::isfinite(weight_decay), kind_, ": weight_decay must be finite and >= 0, got ",
             weight_decay);
  for (size_t g = 0; g < groups_.size(); ++g) {
    ParamGroup& grp = groups_[g];
    KOLO_CHECK(grp.lr_mult >= 0 && std::isfinite(grp.lr_mult), kind_, ": group ", g,
               "'s lr_mult must be finite and >= 0, got ", grp.lr_mult);
    KOLO_CHECK(!grp.weight_decay || (*grp.weight_decay >= 0 && std::isfinite(*grp.weight_decay)), kind_, ": group ", g,
               "'s weight_decay must be finite and >= 0, got ", grp.weight_decay.value_or(0));
    std::vector<Tensor> tensors;
    for (size_t i = 0; i < grp.params.size(); ++i) {
      NamedParameter& p = grp.params[i];
      if (p.name.empty()) p.name = "group" + std::to_string(g) + ".param" + std::to_string(i);
      KOLO_CHECK(p.tensor.defined(), kind_, ": parameter '", p.name, "' is undefined");
      KOLO_CHECK(p.tensor.dtype() == DType::F32 || needs_master_weights(p.tensor.dtype()), kind_, ": parameter '",
                 p.name, "' is ", p.tensor.describe(), "; optimizers take f32 parameters, or bf16/f16 ones (which get ",
                 "f32 master weights)");
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
    masters_.push_back(needs_master_weights(flats_.back().dtype())
                           ? std::make_unique<MasterWeights>(flats_.back(), kind_ + " group " + std::to_string(g))
                           : nullptr);
    std::vector<Tensor> st;
    for (size_t k = 0; k < state_names_.size(); ++k) st.push_back(update_flat(g).state_like());
    state_.push_back(std::move(st));
    param_steps_.emplace_back(grp.params.size(), 0);
  }
}

void Optimizer::set_lr(double lr) {
  KOLO_CHECK(lr >= 0 && std::isfinite(lr), kind_, ": learning rate must be finite and >= 0, got ", lr);
  lr_ = lr;
  write_lr_at();
}

void Optimizer::write_lr_at() {
  NoGradGuard ng;
  for (size_t g = 0; g < lr_at_.size(); ++g) lr_at_[g].fill_(lr_ * groups_[g].lr_mult);
}

// A group's step count is its parameters' (the first one's stands for the group; step() refuses a capturable
// step whose parameters' counts differ).
void Optimizer::write_step_at() {
  NoGradGuard ng;
  for (size_t g = 0; g < step_at_.size(); ++g)
    step_at_[g].fill_(param_steps_[g].empty() ? 0.0 : static_cast<double>(param_steps_[g][0]));
}

void Optimizer::set_capturable(bool on) {
  KOLO_CHECK(!on || capturable_rule(), kind_, ": its update takes per-step values from the host, so it cannot be ",
             "captured in a CUDA graph (SGD and Adam can)");
  lr_at_.clear();
  step_at_.clear();
  one_at_.clear();
  if (!on) return;
  NoGradGuard ng;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const Device dev = update_flat(g).device();
    lr_at_.push_back(Tensor::empty({1}, DType::F32, dev));
    step_at_.push_back(Tensor::empty({1}, DType::F32, dev));
    one_at_.push_back(Tensor::ones({1}, DType::F32, dev));
  }
  write_lr_at();
  write_step_at();
}

void Optimizer::note_replayed_step() {
  KOLO_CHECK(capturable(), kind_, ": note_replayed_step() without set_capturable(true)");
  for (size_t g = 0; g < had_.size(); ++g)
    for (size_t i = 0; i < had_[g].size(); ++i)
      if (had_[g][i]) ++param_steps_[g][i];
  ++step_;
}

void Optimizer::zero_grad() {
  for (FlatBuffer& f : flats_) f.bind_grads();
  prepared_ = false;
}

bool Optimizer::has_master_weights() const {
  for (const auto& m : masters_)
    if (m) return true;
  return false;
}

void Optimizer::reload_master_weights() {
  NoGradGuard ng;
  for (size_t g = 0; g < groups_.size(); ++g)
    if (masters_[g]) {
      optim_kernels::UpdateDeviceScope on(flats_[g].device());
      masters_[g]->reload(flats_[g]);
    }
}

bool Optimizer::prepare_grads(double inv_scale, bool check) {
  NoGradGuard ng;
  bool finite = true;
  had_.assign(groups_.size(), {});
  const float inv = static_cast<float>(inv_scale);
  for (size_t g = 0; g < groups_.size(); ++g) {
    FlatBuffer& f = flats_[g];
    optim_kernels::UpdateDeviceScope on(f.device());
    if (masters_[g]) {
      bool ok = true;
      had_[g] = masters_[g]->load_grads(f, inv, check, &ok);
      finite = finite && ok;
      continue;
    }
    had_[g] = f.gather_grads();
    if ((inv_scale != 1.0 || check) && f.numel() > 0) {
      const std::span<float> all = f.all(f.grads());
      finite = optim_kernels::unscale_to_f32(all.data(), DType::F32, all, inv, check) && finite;
    }
  }
  prepared_ = true;
  return finite;
}

bool Optimizer::unscale_grads(double inv_scale) {
  KOLO_CHECK(inv_scale > 0 && std::isfinite(inv_scale), kind_, ": gradient unscale factor must be finite and > 0, got ",
             inv_scale);
  return prepare_grads(inv_scale, true);
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

double Optimizer::last_grad_norm() const {
  if (!pending_norm_sq_.empty()) {
    double sq = 0.0;
    for (const Tensor& t : pending_norm_sq_) sq += t.to(Device::cpu()).item();
    last_grad_norm_ = std::sqrt(sq);
    pending_norm_sq_.clear();
  }
  return last_grad_norm_;
}

void Optimizer::queue_grad_norm() {
  pending_norm_sq_.clear();
  last_grad_norm_ = 0;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const FlatBuffer& f = update_flat(g);
    if (f.numel() == 0) continue;
    optim_kernels::UpdateDeviceScope on(f.device());
    pending_norm_sq_.push_back(Tensor::empty({1}, DType::F64, f.device()));
    optim_kernels::sum_squares_to(f.all(f.grads()), pending_norm_sq_.back().data<double>());
  }
}

std::span<float> Optimizer::GroupView::run_span(const Run& r, const Tensor& buffer) const {
  const auto& segs = flat->segments();
  const int64_t off = segs[r.first].offset;
  const int64_t n = segs[r.last - 1].offset + segs[r.last - 1].numel - off;
  return flat->all(buffer).subspan(static_cast<size_t>(off), static_cast<size_t>(n));
}

void Optimizer::step() {
  NoGradGuard ng;
  if (!prepared_) prepare_grads(1.0, /*check=*/false);
  prepared_ = false;
  const std::vector<std::vector<bool>>& had = had_;
  // A captured step replays one update per group over all of its parameters, with the group's step count
  // read from device memory: every parameter must have a gradient and the same count. Checked before
  // anything changes.
  for (size_t g = 0; g < step_at_.size(); ++g)
    for (size_t i = 0; i < had[g].size(); ++i)
      KOLO_CHECK(had[g][i] && param_steps_[g][i] == param_steps_[g][0], kind_, ": a capturable step needs every ",
                 "parameter of group ", g, " with a gradient and at the group's step count; '",
                 groups_[g].params[i].name, "' ", had[g][i] ? "is at step " : "has no gradient, at step ",
                 param_steps_[g][i], " against ", param_steps_[g][0]);
  queue_grad_norm();
  if (clip_norm_ > 0) {
    // Clipping needs the norm on the host: the one wait of a clipped step.
    const double norm = last_grad_norm();
    KOLO_CHECK(std::isfinite(norm), kind_, ": gradient norm is ", norm, " at step ", step_ + 1,
               "; cannot clip a non-finite gradient");
    // torch.nn.utils.clip_grad_norm_: scale by max/(norm + 1e-6) only when that is below 1.
    const double coef = clip_norm_ / (norm + 1e-6);
    if (coef < 1.0)
      for (size_t g = 0; g < groups_.size(); ++g) {
        const FlatBuffer& f = update_flat(g);
        if (f.numel() > 0) {
          optim_kernels::UpdateDeviceScope on(f.device());
          optim_kernels::scale_inplace(f.all(f.grads()), static_cast<float>(coef));
        }
      }
  }
  for (size_t g = 0; g < groups_.size(); ++g) {
    GroupView v;
    v.index = g;
    v.lr = lr_ * groups_[g].lr_mult;
    if (!lr_at_.empty()) v.lr_at = lr_at_[g].data<float>();
    v.weight_decay = groups_[g].weight_decay.value_or(default_weight_decay_);
    v.exclude_from_adaptation = groups_[g].exclude_from_adaptation;
    v.flat = &update_flat(g);
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
    if (!step_at_.empty()) {
      add_(step_at_[g], one_at_[g]);
      v.step_at = step_at_[g].data<float>();
    }
    update_group(v);
    if (masters_[g]) masters_[g]->store(flats_[g]);
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
      const Shape& shape = groups_[g].params[i].tensor.shape();
      for (size_t k = 0; k < state_names_.size(); ++k)
        s.tensors[name + "/" + state_names_[k]] = state_[g][k].slice(0, seg.offset, seg.offset + seg.numel).clone().view(shape);
      if (masters_[g])
        s.tensors[name + "/master"] = masters_[g]->flat().values().slice(0, seg.offset, seg.offset + seg.numel).clone().view(shape);
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
      auto m = s.tensors.find(p.name + "/master");
      KOLO_CHECK(m == s.tensors.end() || (masters_[g] && m->second.shape() == p.tensor.shape()), kind_,
                 ": state dict has master weights '", p.name, "/master' ", m->second.describe(), " but parameter ",
                 p.tensor.describe(), masters_[g] ? " has another shape" : " has none (it is not bf16/f16)");
    }
  lr_ = scalar("lr");
  write_lr_at();
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
      if (!masters_[g]) continue;
      // Saved masters are the exact training state; without them (a checkpoint of an f32 run resumed in
      // bf16) the masters restart from the parameters' current values.
      Tensor master = masters_[g]->flat().values().slice(0, seg.offset, seg.offset + seg.numel).view(p.tensor.shape());
      auto m = s.tensors.find(p.name + "/master");
      master.copy_(m != s.tensors.end() ? m->second : p.tensor.detach());
    }
  write_step_at();
  for (size_t g = 0; g < groups_.size(); ++g)
    if (masters_[g]) {
      optim_kernels::UpdateDeviceScope on(flats_[g].device());
      masters_[g]->store(flats_[g]);
    }
}

}  // namespace kolo
