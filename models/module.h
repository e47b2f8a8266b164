// Module: the base of every layer and model — named parameters, buffers and children, train/eval mode,
// device/dtype moves, state dicts for checkpoints and the `--summary` table.
//
// Ownership: a module owns its parameters and buffers as Tensor handles and its children as shared_ptrs.
// Layers keep a copy of the handle they registered (same TensorImpl), so moves and loads that must be seen
// by every holder (layers, optimizers, tied users) change the TensorImpl in place instead of replacing it.
// A tensor registered under two names (tied weights) is counted, listed and exported once, under the name
// it was first reached by in registration order.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor/tensor.h"

namespace kolo::models {

using StateDict = std::map<std::string, Tensor>;

class Module {
 public:
  explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  const std::string& type_name() const { return type_name_; }

  // ---- tree
  // All parameters (trainable leaves) in registration order, children after their parent's own; tied
  // tensors appear once. Names are dotted paths ("layer1.0.conv1.weight").
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<Tensor> parameters() const;
  // Non-trainable state saved in checkpoints (batch-norm running statistics).
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  // Random-number generators of stochastic layers (dropout), so that checkpoints resume their streams.
  std::vector<std::pair<std::string, Generator*>> named_generators() const;
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }
  // Every module in pre-order with its dotted path ("" for this one).
  std::vector<std::pair<std::string, const Module*>> named_modules() const;
  // This module's own parameters and buffers (not its children's).
  const std::vector<std::pair<std::string, Tensor>>& own_parameters() const { return params_; }
  const std::vector<std::pair<std::string, Tensor>>& own_buffers() const { return buffers_; }

  int64_t parameter_count() const;  // elements of unique parameters

  // ---- modes and state
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void zero_grad();
  // Moves/converts every parameter and buffer in place (floating dtypes only for to(DType)); gradients are
  // dropped because they no longer match.
  void to(Device device);
  void to(DType dtype);
  // Converts the floating parameters only; buffers keep their dtype. Mixed-precision training: the weights
  // run in bf16/f16 (the optimizer keeps f32 masters) while batch-norm running statistics, which the ops
  // accept in any floating dtype, stay f32 so that momentum-0.1 averages are not rounded to 8 bits.
  void cast_parameters(DType dtype);

  // name -> tensor: parameters and buffers as their live handles (detached, no copies), and each generator
  // as an i64 [seed, offset] snapshot, so that a resumed run draws the same dropout masks.
  StateDict state_dict() const;
  // Copies values into the live tensors (converting dtype/device). strict: every entry must match a
  // parameter or buffer of the same shape and every parameter/buffer must be present.
  void load_state_dict(const StateDict& state, bool strict = true);

  // ---- summary support: while recording, layers remember the shape of their last output.
  void set_record_shapes(bool on);
  const Shape& last_output_shape() const { return last_output_shape_; }

 protected:
  Tensor register_parameter(const std::string& name, Tensor t);
  Tensor register_buffer(const std::string& name, Tensor t);
  void register_generator(const std::string& name, Generator* gen);  // `gen` must outlive the module
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    check_new_name(name);
    children_.emplace_back(name, m);
    return m;
  }
  // Layers pass their output through this so that a summary run can report shapes.
  const Tensor& note(const Tensor& y) const {
    if (record_shapes_) last_output_shape_ = y.shape();
    return y;
  }
  bool recording_shapes() const { return record_shapes_; }

 private:
  void check_new_name(const std::string& name) const;
  template <typename Fn>
  void visit_tensors(Fn&& fn);  // every unique parameter and buffer, in place

  std::string type_name_;
  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, Generator*>> generators_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
  bool record_shapes_ = false;
  mutable Shape last_output_shape_;
};

// Children named "0", "1", ... in insertion order (stacks of identical layers).
class ModuleList : public Module {
 public:
  ModuleList() : Module("ModuleList") {}
  template <typename M>
  std::shared_ptr<M> append(std::shared_ptr<M> m) {
    return register_module(std::to_string(children().size()), std::move(m));
  }
};

// The `--summary` table: one row per module (pre-order, indented by depth) with its type, last recorded
// output shape (run a forward with set_record_shapes(true) first to fill them), own parameter shapes and
// own parameter count, then totals (parameters, trainable, buffers, parameter bytes).
std::string summary(const Module& m);

// "25,557,032"
std::string with_commas(int64_t n);

}  // namespace kolo::models
