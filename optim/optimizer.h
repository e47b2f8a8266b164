// Optimizer: the interface every update rule implements, over parameter groups packed into FlatBuffers.
//
// step(): (1) bring every gradient into its group's flat gradient buffer (FlatBuffer::gather_grads),
// (2) optionally clip all gradients to a global L2 norm, (3) call the subclass's update_group() once per
// group with flat spans of parameters, gradients and state. Parameters whose gradient is undefined this
// step are skipped entirely (as torch.optim does for grad == None); bound gradient slots are always
// defined (zero when nothing flowed), so with zero_grad() they are updated with a zero gradient.
//
// State: each subclass declares named per-element state buffers (e.g. exp_avg) kept flat per group, plus
// a per-parameter step count. state_dict() exports them as "<param>/<state>" tensors and "<param>/step"
// scalars (with "lr" and "step"), load_state_dict() checks and copies them back: the checkpoint format.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "optim/flat_buffer.h"
#include "optim/param_group.h"

namespace kolo {

struct OptimizerState {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, double> scalars;
};

class Optimizer {
 public:
  // The spans one update_group() call works on. `runs` lists maximal ranges of consecutive parameters
  // that had a gradient and share a step count, so elementwise rules need one pass per run (usually one).
  struct Run {
    size_t first = 0, last = 0;  // parameter indices [first, last)
    int64_t step = 1;            // 1-based step of these parameters, after incrementing
  };
  struct GroupView {
    size_t index = 0;
    double lr = 0;             // optimizer lr * lr_mult
    double weight_decay = 0;
    bool exclude_from_adaptation = false;
    const FlatBuffer* flat = nullptr;
    std::vector<Tensor>* state = nullptr;  // one flat buffer per state_names() entry
    std::vector<Run> runs;
  };

  Optimizer(std::vector<ParamGroup> groups, double lr, double weight_decay, std::string kind,
            std::vector<std::string> state_names);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  void step();
  // Zeroes the flat gradient buffers and binds each parameter's grad to its slot.
  void zero_grad();

  const std::string& kind() const { return kind_; }
  double lr() const { return lr_; }
  void set_lr(double lr);
  int64_t step_count() const { return step_; }
  // max_norm <= 0 disables clipping. The pre-clip global norm of the last step is kept for logging.
  void set_clip_grad_norm(double max_norm) { clip_norm_ = max_norm; }
  double last_grad_norm() const { return last_grad_norm_; }

  size_t num_groups() const { return groups_.size(); }
  const ParamGroup& group(size_t g) const { return groups_[g]; }
  std::vector<NamedParameter> named_parameters() const;
  // The flat gradient slot of a parameter (shaped like it); throws if the tensor is not managed here.
  Tensor grad_slot(const Tensor& param) const;
  const FlatBuffer& flat(size_t g) const { return flats_[g]; }

  OptimizerState state_dict() const;
  void load_state_dict(const OptimizerState& state);

 protected:
  virtual void update_group(const GroupView& view) = 0;

 private:
  struct Location {
    size_t group = 0, index = 0;
  };
  Location locate(const Tensor& param) const;

  std::vector<ParamGroup> groups_;
  std::vector<FlatBuffer> flats_;
  std::vector<std::vector<Tensor>> state_;         // [group][state name] flat buffers
  std::vector<std::vector<int64_t>> param_steps_;  // [group][param]
  std::vector<std::string> state_names_;
  std::map<std::string, Location> by_name_;
  std::string kind_;
  double lr_;
  double default_weight_decay_;
  double clip_norm_ = 0;
  double last_grad_norm_ = 0;
  int64_t step_ = 0;
};

// Global L2 norm over the gradient buffers of all groups, after gathering (used by step's clipping).
double global_grad_norm(const Optimizer& opt);

}  // namespace kolo
