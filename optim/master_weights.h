// MasterWeights: the f32 master copy of one parameter group whose model tensors are bf16 or f16
// (mixed-precision training), and the three passes that connect the two copies.
//
// The model keeps its parameters and gradients in the low dtype, packed in the group's FlatBuffer (so
// forward/backward run in bf16/f16 and DistributedOptimizer allreduces the low-precision gradient slots).
// This object keeps a second FlatBuffer in f32 — master values and f32 gradients — that the update rules
// read and write, so updates smaller than the low dtype's resolution accumulate in the master instead of
// rounding away. Per step (Optimizer::step drives it, on the group's device, no host round trip):
//   1. load_grads: low-precision gradients -> f32, multiplied by 1/loss_scale, optionally checked for
//      NaN/Inf, in one pass over the whole flat gradient; gradients that are not in their bound slot
//      (row-sparse, or replaced with set_grad) are densified straight into the f32 slot, so the sum of
//      many sparse rows is not rounded to the low dtype first.
//   2. the update rule runs on the f32 buffers (Optimizer::update_group).
//   3. store: masters rounded to nearest even into the model's parameters, one pass over the flat.
// The masters start as the f32 values of the parameters (exactly representable); reload() repeats that
// after the parameters were changed outside the optimizer.
#pragma once

#include <string>
#include <vector>

#include "optim/flat_buffer.h"

namespace kolo {

// True for the dtypes that get f32 master weights (bf16, f16).
bool needs_master_weights(DType dtype);

class MasterWeights {
 public:
  // `model`: the group's packed low-precision parameters. `what` names the owner in errors.
  MasterWeights(const FlatBuffer& model, const std::string& what);

  // f32: values() are the masters, grads() the f32 gradients the update rules read.
  const FlatBuffer& flat() const { return master_; }
  DType model_dtype() const { return model_dtype_; }

  // Step 1 above. Returns, per parameter, whether it had a gradient (as FlatBuffer::gather_grads); sets
  // *finite (when `check`) to whether every converted gradient is finite.
  std::vector<bool> load_grads(const FlatBuffer& model, float inv_scale, bool check, bool* finite);
  // Step 3 above: model parameters = masters in the model dtype.
  void store(const FlatBuffer& model) const;
  // masters = the model parameters' current values.
  void reload(const FlatBuffer& model);

 private:
  FlatBuffer master_;
  DType model_dtype_;
  std::string what_;
};

}  // namespace kolo
