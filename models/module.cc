// Module tree walking, in-place device/dtype moves, state dicts and the summary table.
#include "models/module.h"

#include <algorithm>
#include <iomanip>
#include <set>
#include <sstream>

#include "core/autograd/grad_mode.h"

namespace kolo::models {

namespace {

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// Pre-order walk collecting (path, tensor) for parameters or buffers, each TensorImpl once.
void collect(const Module& m, const std::string& prefix, bool params, std::set<const TensorImpl*>& seen,
             std::vector<std::pair<std::string, Tensor>>& out) {
  for (const auto& [name, t] : params ? m.own_parameters() : m.own_buffers())
    if (seen.insert(t.impl_ptr().get()).second) out.emplace_back(join(prefix, name), t);
  for (const auto& [name, child] : m.children()) collect(*child, join(prefix, name), params, seen, out);
}

// Replaces what `t` points at with `src`'s data, keeping the TensorImpl (and so every handle) alive.
void rebind(Tensor& t, const Tensor& src) {
  TensorImpl& dst = t.impl();
  const TensorImpl& s = src.impl();
  dst.storage = s.storage;
  dst.offset = s.offset;
  dst.shape = s.shape;
  dst.strides = s.strides;
  dst.dtype = s.dtype;
  dst.device = s.device;
  if (t.requires_grad()) t.zero_grad();
}

}  // namespace

void Module::check_new_name(const std::string& name) const {
  KOLO_CHECK(!name.empty() && name.find('.') == std::string::npos, "module ", type_name_,
             ": invalid member name '", name, "' (non-empty, no dots)");
  auto taken = [&](const auto& v) {
    return std::any_of(v.begin(), v.end(), [&](const auto& p) { return p.first == name; });
  };
  KOLO_CHECK(!taken(params_) && !taken(buffers_) && !taken(generators_) && !taken(children_), "module ",
             type_name_, ": name '", name,
             "' registered twice");
}

Tensor Module::register_parameter(const std::string& name, Tensor t) {
  check_new_name(name);
  KOLO_CHECK(t.defined() && is_floating(t.dtype()), "module ", type_name_, ": parameter '", name,
             "' must be a defined floating tensor");
  if (!t.requires_grad()) t.set_requires_grad(true);
  if (t.name().empty()) t.set_name(name);
  params_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  check_new_name(name);
  KOLO_CHECK(t.defined(), "module ", type_name_, ": buffer '", name, "' is undefined");
  if (t.name().empty()) t.set_name(name);
  buffers_.emplace_back(name, t);
  return t;
}

void Module::register_generator(const std::string& name, Generator* gen) {
  check_new_name(name);
  KOLO_CHECK(gen != nullptr, "module ", type_name_, ": generator '", name, "' is null");
  generators_.emplace_back(name, gen);
}

std::vector<std::pair<std::string, Generator*>> Module::named_generators() const {
  std::vector<std::pair<std::string, Generator*>> out(generators_.begin(), generators_.end());
  for (const auto& [name, child] : children_)
    for (auto& [sub, g] : child->named_generators()) out.emplace_back(name + "." + sub, g);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::set<const TensorImpl*> seen;
  std::vector<std::pair<std::string, Tensor>> out;
  collect(*this, "", true, seen, out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers() const {
  std::set<const TensorImpl*> seen;
  std::vector<std::pair<std::string, Tensor>> out;
  collect(*this, "", false, seen, out);
  return out;
}

std::vector<std::pair<std::string, const Module*>> Module::named_modules() const {
  std::vector<std::pair<std::string, const Module*>> out{{"", this}};
  for (const auto& [name, child] : children_)
    for (auto& [sub, m] : child->named_modules()) out.emplace_back(sub.empty() ? name : name + "." + sub, m);
  return out;
}

int64_t Module::parameter_count() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::zero_grad() {
  for (auto& [name, t] : named_parameters()) t.zero_grad();
}

template <typename Fn>
void Module::visit_tensors(Fn&& fn) {
  for (auto& [name, t] : named_parameters()) fn(t);
  for (auto& [name, t] : named_buffers()) fn(t);
}

void Module::to(Device device) {
  NoGradGuard ng;
  visit_tensors([&](Tensor& t) {
    if (t.device() != device) rebind(t, t.detach().to(device));
  });
}

void Module::to(DType dtype) {
  KOLO_CHECK(is_floating(dtype), "module ", type_name_, ": to(", dtype_name(dtype), ") needs a floating dtype");
  NoGradGuard ng;
  visit_tensors([&](Tensor& t) {
    if (is_floating(t.dtype()) && t.dtype() != dtype) rebind(t, t.detach().to(dtype));
  });
}

void Module::cast_parameters(DType dtype) {
  KOLO_CHECK(is_floating(dtype), "module ", type_name_, ": cast_parameters(", dtype_name(dtype),
             ") needs a floating dtype");
  NoGradGuard ng;
  for (auto& [name, t] : named_parameters())
    if (is_floating(t.dtype()) && t.dtype() != dtype) rebind(t, t.detach().to(dtype));
}

StateDict Module::state_dict() const {
  StateDict out;
  for (auto& [name, t] : named_parameters()) out[name] = t.detach();
  for (auto& [name, t] : named_buffers()) out[name] = t.detach();
  for (auto& [name, g] : named_generators())
    out[name] = Tensor::from_vector<int64_t>({static_cast<int64_t>(g->seed()), static_cast<int64_t>(g->offset())}, {2});
  return out;
}

void Module::load_state_dict(const StateDict& state, bool strict) {
  NoGradGuard ng;
  std::set<std::string> used;
  auto load = [&](const std::string& name, Tensor& t) {
    auto it = state.find(name);
    if (it == state.end()) {
      KOLO_CHECK(!strict, "load_state_dict: ", type_name_, " has no entry for '", name, "' ", t.describe());
      return;
    }
    KOLO_CHECK(it->second.shape() == t.shape(), "load_state_dict: '", name, "' has shape ",
               shape_str(it->second.shape()), " but the model expects ", shape_str(t.shape()));
    t.copy_(it->second.to_dense());
    used.insert(name);
  };
  for (auto& [name, t] : named_parameters()) load(name, t);
  for (auto& [name, t] : named_buffers()) load(name, t);
  for (auto& [name, g] : named_generators()) {
    auto it = state.find(name);
    if (it == state.end()) {
      KOLO_CHECK(!strict, "load_state_dict: ", type_name_, " has no entry for generator '", name, "'");
      continue;
    }
    KOLO_CHECK(it->second.shape() == Shape{2} && it->second.dtype() == DType::I64, "load_state_dict: generator '",
               name, "' needs an i64 [seed, offset] tensor, got ", it->second.describe());
    const auto st = it->second.to_vector<int64_t>();
    g->set_state(static_cast<uint64_t>(st[0]), static_cast<uint64_t>(st[1]));
    used.insert(name);
  }
  if (strict)
    for (const auto& [name, t] : state)
      KOLO_CHECK(used.count(name), "load_state_dict: unexpected entry '", name, "' ", t.describe(),
                 " for model ", type_name_);
}

void Module::set_record_shapes(bool on) {
  record_shapes_ = on;
  if (!on) last_output_shape_.clear();
  for (auto& [name, child] : children_) child->set_record_shapes(on);
}

std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

std::string summary(const Module& m) {
  std::ostringstream os;
  constexpr int kName = 44, kShape = 22, kParams = 30;
  os << std::left << std::setw(kName) << "Layer (type)" << std::setw(kShape) << "Output shape"
     << std::setw(kParams) << "Parameter shapes" << std::right << std::setw(14) << "Param #" << "\n";
  os << std::string(kName + kShape + kParams + 14, '=') << "\n";
  std::set<const TensorImpl*> seen;
  for (const auto& [path, mod] : m.named_modules()) {
    const int depth = path.empty() ? 0 : 1 + static_cast<int>(std::count(path.begin(), path.end(), '.'));
    std::string label = std::string(2 * depth, ' ') + (path.empty() ? "(model)" : path.substr(path.rfind('.') + 1));
    label += " (" + mod->type_name() + ")";
    std::string pshapes;
    int64_t own = 0;
    for (const auto& [name, t] : mod->own_parameters()) {
      if (!pshapes.empty()) pshapes += " ";
      pshapes += shape_str(t.shape());
      if (seen.insert(t.impl_ptr().get()).second)
        own += t.numel();
      else
        pshapes += "(tied)";
    }
    const Shape& out = mod->last_output_shape();
    os << std::left << std::setw(kName) << label << std::setw(kShape) << (out.empty() ? "-" : shape_str(out))
       << std::setw(kParams) << (pshapes.empty() ? "" : pshapes) << std::right << std::setw(14)
       << (mod->own_parameters().empty() ? "" : with_commas(own)) << "\n";
  }
  int64_t total = 0, trainable = 0, buffers = 0, bytes = 0;
  for (const auto& [name, t] : m.named_parameters()) {
    total += t.numel();
    if (t.requires_grad()) trainable += t.numel();
    bytes += static_cast<int64_t>(t.nbytes());
  }
  for (const auto& [name, t] : m.named_buffers()) buffers += t.numel();
  os << std::string(kName + kShape + kParams + 14, '=') << "\n";
  os << "Total params: " << with_commas(total) << "\n";
  os << "Trainable params: " << with_commas(trainable) << "\n";
  os << "Buffer elements: " << with_commas(buffers) << "\n";
  os << "Parameter size (MB): " << std::fixed << std::setprecision(2) << bytes / (1024.0 * 1024.0) << "\n";
  return os.str();
}

}  // namespace kolo::models
