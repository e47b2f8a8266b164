// Optimizer: the interface every update rule implements, over parameter groups packed into FlatBuffers.
//
// step(): (1) bring every gradient into its group's flat gradient buffer (FlatBuffer::gather_grads),
// (2) optionally clip all gradients to a global L2 norm, (3) call the subclass's update_group() once per
// group with flat spans of parameters, gradients and state. Parameters whose gradient is undefined this
// step are skipped entirely (as torch.optim does for grad == None). zero_grad() drops the gradients and
// binds each parameter's slot (Tensor::set_grad_slot), so a parameter the backward does not reach is
// skipped, as after torch's zero_grad(set_to_none=True).
//
// Mixed precision: a group of bf16/f16 parameters gets f32 master weights (optim/master_weights.h). The
// model's tensors, their flat gradient slots (grad_slot, flat) and hence DistributedOptimizer stay in the low
// dtype; step() converts the gradients to f32, runs the update rule on the masters (update_flat) and writes
// them back rounded. unscale_grads(1/loss_scale) does the conversion early, dividing by a loss scale and
// checking for NaN/Inf (DynamicLossScaler calls it); step() then uses those gradients as they are.
//
// State: each subclass declares named per-element state buffers (e.g. exp_avg) kept flat per group, plus
// a per-parameter step count. state_dict() exports them as "<param>/<state>" tensors and "<param>/step"
// scalars (with "lr" and "step"), plus "<param>/master" (f32) for parameters with master weights; load_state_dict()
// checks and copies them back (and writes loaded masters into the parameters): the checkpoint format.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "optim/flat_buffer.h"
#include "optim/master_weights.h"
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
    const float* lr_at = nullptr;  // capturable(): the same value in update-device memory, read at run time
    // capturable(): the group's step count (this step included) as a float in update-device memory, advanced
    // there by step() itself, so a replay counts too; step() then makes one run of the whole group.
    const float* step_at = nullptr;
    double weight_decay = 0;
    bool exclude_from_adaptation = false;
    const FlatBuffer* flat = nullptr;      // f32: the parameters themselves, or their master weights
    std::vector<Tensor>* state = nullptr;  // one flat buffer per state_names() entry
    std::vector<Run> runs;
    // The elements of run `r` in `buffer` (the flat values, gradients, or one state buffer).
    std::span<float> run_span(const Run& r, const Tensor& buffer) const;
  };

  Optimizer(std::vector<ParamGroup> groups, double lr, double weight_decay, std::string kind,
            std::vector<std::string> state_names);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  void step();
  // Drops the gradients and binds each parameter's flat-buffer slot as the place its next gradient lands.
  void zero_grad();
  // Brings this step's gradients into the f32 buffers the update reads, multiplied by inv_scale, and
  // returns whether all of them are finite. f32 groups are scaled in place; bf16/f16 groups are converted
  // into their masters' f32 gradients (the parameters' own low-precision gradients stay as they are). The
  // next step() uses the result instead of gathering again, until zero_grad(). Call after the gradient
  // exchange (DistributedOptimizer::synchronize), as DynamicLossScaler::unscale_and_update does.
  bool unscale_grads(double inv_scale);

  const std::string& kind() const { return kind_; }
  double lr() const { return lr_; }
  void set_lr(double lr);
  int64_t step_count() const { return step_; }

  // CUDA graph capture of step(): with capturable on, the update reads each group's learning rate from
  // update-device memory that set_lr() writes (with a kernel, outside any capture), so a replayed step
  // follows the schedule, and each group's step count from update-device memory that step() advances with
  // a kernel of its own (Adam's bias corrections, SGD's first step). Call set_lr() before the captured region,
  // not inside it.
  // Optimizers whose rule takes other per-step values from the host (LARS's and LAMB's trust ratios) refuse
  // with kolo::Error. After each replay of a captured step(), note_replayed_step() advances the host's step
  // counts the replay did not (the checkpointed state).
  void set_capturable(bool on);
  bool capturable() const { return !lr_at_.empty(); }
  void note_replayed_step();
  // max_norm <= 0 disables clipping. The pre-clip global norm of the last step is kept for logging.
  void set_clip_grad_norm(double max_norm) { clip_norm_ = max_norm; }
  // Global L2 norm over the f32 gradient buffers (update_flat) of all groups. step() only enqueues its
  // reduction on the update device, so an unclipped step has no host wait; the first call after the step
  // reads it back (and waits for it there).
  double last_grad_norm() const;

  size_t num_groups() const { return groups_.size(); }
  const ParamGroup& group(size_t g) const { return groups_[g]; }
  std::vector<NamedParameter> named_parameters() const;
  // The flat gradient slot of a parameter (shaped like it); throws if the tensor is not managed here.
  Tensor grad_slot(const Tensor& param) const;
  // The model-side packing of group g: the parameters in their own dtype and their gradient slots.
  const FlatBuffer& flat(size_t g) const { return flats_[g]; }
  // The f32 buffers the update rule of group g works on: its master weights, or flat(g) for f32 groups.
  const FlatBuffer& update_flat(size_t g) const { return masters_[g] ? masters_[g]->flat() : flats_[g]; }
  // Group g's master weights; null for an f32 group.
  const MasterWeights* master_weights(size_t g) const { return masters_[g].get(); }
  bool has_master_weights() const;
  // Copies the parameters' current values into their f32 masters. Needed only after changing parameters
  // outside the optimizer (e.g. broadcast_parameters after construction); load_state_dict does it itself.
  void reload_master_weights();

  OptimizerState state_dict() const;
  void load_state_dict(const OptimizerState& state);

 protected:
  virtual void update_group(const GroupView& view) = 0;
  // Whether update_group honours GroupView::lr_at (and step_at where it needs the step count) and takes
  // nothing else per step from the host.
  virtual bool capturable_rule() const { return false; }

 private:
  struct Location {
    size_t group = 0, index = 0;
  };
  Location locate(const Tensor& param) const;
  // Gathers (and converts) every group's gradients; sets prepared_ and had_.
  bool prepare_grads(double inv_scale, bool check);

  std::vector<ParamGroup> groups_;
  std::vector<FlatBuffer> flats_;
  std::vector<std::unique_ptr<MasterWeights>> masters_;  // [group], null for f32 groups
  bool prepared_ = false;                                // gradients gathered since the last zero_grad/step
  std::vector<std::vector<bool>> had_;                   // [group][param] had a gradient this step
  std::vector<std::vector<Tensor>> state_;         // [group][state name] flat buffers
  std::vector<std::vector<int64_t>> param_steps_;  // [group][param]
  std::vector<std::string> state_names_;
  std::map<std::string, Location> by_name_;
  std::string kind_;
  double lr_;
  double default_weight_decay_;
  double clip_norm_ = 0;
  mutable double last_grad_norm_ = 0;
  mutable std::vector<Tensor> pending_norm_sq_;  // per group, f64 on its device: not read back yet
  void queue_grad_norm();                        // fills pending_norm_sq_ from the gathered gradients
  int64_t step_ = 0;
  std::vector<Tensor> lr_at_;    // [group] f32 [1] on the update device while capturable
  std::vector<Tensor> step_at_;  // [group] f32 [1]: the group's step count there, advanced by step()
  std::vector<Tensor> one_at_;   // [group] f32 [1] holding 1, the increment
  void write_lr_at();
  void write_step_at();
};

}  // namespace kolo
