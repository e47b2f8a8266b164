// DistributedOptimizer: data-parallel training around any Optimizer, Horovod-style.
//
// Protocol per step:
//  1. zero_grad(): the inner optimizer binds dense gradient slots (AccumulateGrad then sums in place into
//     the flat buffer); parameters known to produce row-sparse gradients are left without a gradient so
//     backward hands them over in sparse form.
//  2. backward(): each parameter's grad-ready hook fires as soon as its gradient is final (later layers
//     first) and, on the backward_passes_per_step-th pass, enqueues its exchange at once, so communication
//     overlaps the rest of backward:
//       dense  -> in-place async allreduce (Average) of the gradient slot, prescale 1/f, postscale f where
//                 f = gradient_predivide_factor (so the sum is scaled by 1/f before and f/size after);
//       sparse -> default: allgather of indices and of values from every rank; the concatenation becomes the
//                 gradient (the inner step accumulates it: memory grows with ranks x rows, as TensorFlow);
//                 sparse_as_dense: densify into the slot, then allreduce like a dense gradient.
//  3. step(): synchronize() enqueues what no hook enqueued (parameters that got no gradient contribute
//     zeros, or an empty sparse block, so no rank waits on a name another rank never offers), waits for
//     every handle (with wait_on_device, device gradients on the compute stream, Handle::wait_device: the
//     host does not wait for the device), installs the gathered sparse gradients, then runs the inner
//     optimizer's step.
// Names: name_prefix ("grad.") + parameter name (+ ".indices"/".values"), identical on every rank
// because parameter names are. A parameter's exchange kind (dense or sparse) is learned from the first
// gradient it delivers; if a sparse parameter may be unused on some ranks in the very first step, list it
// in sparse_params (otherwise those ranks would offer a dense allreduce under another name than the others'
// allgathers: nothing matches, and the stall inspector names the tensors each side waits for).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "collectives/runtime.h"
#include "optim/nonfinite_guard.h"
#include "optim/optimizer.h"

namespace kolo {

struct DistributedOptimizerOptions {
  int backward_passes_per_step = 1;
  // With backward_passes_per_step = k > 1, divide the accumulated gradient by k (the k passes then equal
  // one k-times larger batch when each pass's loss is a mean).
  bool average_aggregated_gradients = true;
  double gradient_predivide_factor = 1.0;
  ReduceOp op = ReduceOp::Average;            // Average or Sum
  std::optional<Compression> compression;     // dense allreduce wire format; unset: the runtime's default
  bool sparse_as_dense = false;
  std::set<std::string> sparse_params;        // parameters whose gradients are row-sparse (see above)
  int process_set = 0;
  // Collective names are name_prefix + parameter name; two optimizers whose exchanges may be in flight at
  // the same time (e.g. two models with equal parameter names) need different prefixes.
  std::string name_prefix = "grad.";
  // Checked in step() after the exchange, so all ranks agree (see optim/nonfinite_guard.h).
  NonfinitePolicy nonfinite = NonfinitePolicy::Ignore;
  // Device gradients: step() makes the compute stream wait for the exchange (Handle::wait_device) instead
  // of waiting on the host for it. Unset: KOLO_DEVICE_WAIT (0 or 1) where set, else on the device for a
  // process set of one rank and on the host for more. Measured on two H200s (benchmarks/RESULTS.md, session
  // 5): ResNet-50 1.9% faster on one GPU, 2.2% slower on two; Transformer-big unchanged. At one rank, with
  // nobody to drift from, a host wait only drains the GPU before the next step (session 7, one H200:
  // Transformer-big +0.7%).
  std::optional<bool> wait_on_device = default_wait_on_device();
  static std::optional<bool> default_wait_on_device();
};

// Bytes exchanged, cumulative since construction or reset_stats().
struct GradientExchangeStats {
  int64_t steps = 0;
  int64_t dense_allreduce_bytes = 0;   // dense gradients allreduced (densified sparse ones included)
  int64_t sparse_gathered_bytes = 0;   // values + indices received by the sparse allgathers (accumulated)
  int64_t sparse_gathered_rows = 0;
  int64_t densified_bytes = 0;         // the part of dense_allreduce_bytes that came from sparse gradients
  int64_t skipped_steps = 0;           // steps skipped for a non-finite gradient (NonfinitePolicy::SkipStep)
};

// One exchange as it was enqueued: for checking overlap with backward.
struct EnqueueRecord {
  std::string name;
  std::chrono::steady_clock::time_point when;
  bool from_hook = false;  // false: enqueued by synchronize() (no gradient this step)
};

class DistributedOptimizer {
 public:
  DistributedOptimizer(Optimizer& inner, Runtime& runtime, DistributedOptimizerOptions options = {});
  ~DistributedOptimizer();
  DistributedOptimizer(const DistributedOptimizer&) = delete;
  DistributedOptimizer& operator=(const DistributedOptimizer&) = delete;

  void zero_grad();
  void synchronize();
  // synchronize(), the non-finite check of options().nonfinite, then the inner step; false when skipped.
  bool step();

  Optimizer& inner() { return inner_; }
  const DistributedOptimizerOptions& options() const;
  GradientExchangeStats stats() const;
  void reset_stats();
  // The exchanges of the current (or, after step(), the last) step in enqueue order.
  std::vector<EnqueueRecord> enqueue_log() const;

 private:
  struct State;
  Optimizer& inner_;
  std::shared_ptr<State> state_;  // hooks hold a weak_ptr: they become no-ops once this object is gone
};

// Copies root's parameter values to every rank (call once before training, after building the model).
void broadcast_parameters(Runtime& runtime, const std::vector<NamedParameter>& params, int root = 0,
                          int process_set = 0);
// Copies root's optimizer state (moments, step counts, lr) to every rank, e.g. after loading a checkpoint
// on rank 0 only.
void broadcast_optimizer_state(Runtime& runtime, Optimizer& optimizer, int root = 0, int process_set = 0);
// Average of a scalar metric (loss, accuracy) over ranks; `name` must be equal on every rank.
double metric_average(Runtime& runtime, double value, const std::string& name, int process_set = 0);
std::vector<double> metric_average(Runtime& runtime, const std::vector<double>& values, const std::string& name,
                                   int process_set = 0);

}  // namespace kolo
