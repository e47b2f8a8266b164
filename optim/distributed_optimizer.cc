// DistributedOptimizer: grad-ready hooks enqueue the exchanges; step() completes them (see the header).
#include "optim/distributed_optimizer.h"

#include <mutex>

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "core/ops/shape_ops.h"
#include "core/util/env.h"

namespace kolo {

namespace {
enum class Kind { Unknown, Dense, Sparse };
}

struct DistributedOptimizer::State {
  struct Entry {
    NamedParameter param;
    Tensor slot;  // the inner optimizer's flat gradient slot
    Kind kind = Kind::Unknown;
    int delay = 1;
    bool enqueued = false;
    bool gathered = false;  // sparse default path: allgathers in flight
    Handle dense, indices, values;
  };

  State(Optimizer& in, Runtime& r, DistributedOptimizerOptions o)
      : inner(in), rt(r), opt(std::move(o)), guard(opt.nonfinite) {}

  Optimizer& inner;
  Runtime& rt;
  DistributedOptimizerOptions opt;
  std::mutex mu;
  std::vector<Entry> entries;
  GradientExchangeStats stats;
  std::vector<EnqueueRecord> log;
  bool new_step = true;
  NonfiniteGuard guard;

  std::string grad_name(const Entry& e) const { return opt.name_prefix + e.param.name; }

  double accumulation_scale() const {
    return opt.average_aggregated_gradients ? 1.0 / opt.backward_passes_per_step : 1.0;
  }

  void record(const std::string& name, bool from_hook) {
    if (new_step) {
      log.clear();
      new_step = false;
    }
    log.push_back({name, std::chrono::steady_clock::now(), from_hook});
  }

  void allreduce_slot(Entry& e, bool from_hook) {
    AllreduceOptions o;
    o.op = opt.op;
    o.prescale = accumulation_scale() / opt.gradient_predivide_factor;
    o.postscale = opt.gradient_predivide_factor;
    o.compression = opt.compression;
    o.process_set = opt.process_set;
    record(grad_name(e), from_hook);
    e.dense = rt.allreduce_async(e.slot, grad_name(e), o);
    stats.dense_allreduce_bytes += static_cast<int64_t>(e.slot.nbytes());
  }

  // Starts the exchange of entry `e` whose gradient this step is `g` (undefined: none reached it).
  void enqueue(Entry& e, Tensor g, bool from_hook) {
    NoGradGuard ng;
    Tensor& p = e.param.tensor;
    if (g.defined() && g.is_sparse()) e.kind = Kind::Sparse;
    if (g.defined() && e.kind == Kind::Unknown) e.kind = Kind::Dense;
    e.enqueued = true;
    if (e.kind != Kind::Sparse) {
      if (!g.defined()) {
        e.slot.zero_();
      } else if (!(g.storage() == e.slot.storage() && g.offset() == e.slot.offset() && g.is_contiguous())) {
        e.slot.copy_(g);
      }
      p.set_grad(e.slot);
      allreduce_slot(e, from_hook);
      return;
    }
    if (opt.sparse_as_dense) {
      // A dense gradient (a tied matrix without keep_sparse_grad) may have been accumulated in the slot itself.
      if (!g.defined() || g.is_sparse()) e.slot.zero_();
      if (g.defined()) {
        if (g.is_sparse())
          index_add_rows_(e.slot, g.sparse_indices(), g.sparse_values().to(e.slot.dtype()));
        else if (!g.same(e.slot))
          e.slot.copy_(g);
        stats.densified_bytes += static_cast<int64_t>(e.slot.nbytes());
      }
      p.set_grad(e.slot);
      allreduce_slot(e, from_hook);
      return;
    }
    // Default sparse path: every rank offers its rows (possibly none); a dense gradient of a sparse
    // parameter is offered as all of its rows so that every rank runs the same collectives.
    Tensor idx, vals;
    Shape row_shape = p.shape();
    row_shape[0] = 0;
    if (!g.defined()) {
      idx = Tensor::empty({0}, DType::I64, p.device());
      vals = Tensor::empty(row_shape, p.dtype(), p.device());
    } else if (g.is_sparse()) {
      idx = g.sparse_indices().contiguous();
      vals = g.sparse_values().to(p.dtype()).contiguous();
    } else {
      idx = Tensor::arange(p.size(0), DType::I64, p.device());
      vals = g.contiguous().clone();
    }
    record(grad_name(e), from_hook);
    e.indices = rt.allgather_async(idx, grad_name(e) + ".indices", opt.process_set);
    e.values = rt.allgather_async(vals, grad_name(e) + ".values", opt.process_set);
    e.gathered = true;
    p.zero_grad();
  }

  void on_grad_ready(size_t i, Tensor& g) {
    std::lock_guard<std::mutex> lock(mu);
    Entry& e = entries[i];
    KOLO_CHECK(!e.enqueued, "DistributedOptimizer: parameter '", e.param.name, "' received a gradient after its ",
               "exchange was enqueued; more backward passes than backward_passes_per_step (",
               opt.backward_passes_per_step, ") before step()");
    if (--e.delay > 0) return;
    enqueue(e, g, true);
  }
};

DistributedOptimizer::DistributedOptimizer(Optimizer& inner, Runtime& runtime, DistributedOptimizerOptions options)
    : inner_(inner), state_(std::make_shared<State>(inner, runtime, std::move(options))) {
  const auto& o = state_->opt;
  KOLO_CHECK(o.backward_passes_per_step >= 1, "DistributedOptimizer: backward_passes_per_step must be >= 1, got ",
             o.backward_passes_per_step);
  KOLO_CHECK(o.gradient_predivide_factor > 0, "DistributedOptimizer: gradient_predivide_factor must be > 0, got ",
             o.gradient_predivide_factor);
  KOLO_CHECK(o.op == ReduceOp::Average || o.op == ReduceOp::Sum,
             "DistributedOptimizer: gradients are reduced with Average or Sum, got ", reduce_op_name(o.op));
  KOLO_CHECK(o.op == ReduceOp::Average || o.gradient_predivide_factor == 1.0,
             "DistributedOptimizer: gradient_predivide_factor needs op Average");
  KOLO_CHECK(runtime.in_process_set(o.process_set), "DistributedOptimizer: rank ", runtime.rank(),
             " is not in process set ", o.process_set);
  std::set<std::string> unknown_sparse = o.sparse_params;
  for (const NamedParameter& p : inner.named_parameters()) {
    State::Entry e;
    e.param = p;
    e.slot = inner.grad_slot(p.tensor);
    e.delay = o.backward_passes_per_step;
    if (unknown_sparse.erase(p.name)) {
      KOLO_CHECK(p.tensor.dim() >= 1, "DistributedOptimizer: sparse parameter '", p.name, "' must have rows");
      e.kind = Kind::Sparse;
    }
    state_->entries.push_back(std::move(e));
  }
  KOLO_CHECK(unknown_sparse.empty(), "DistributedOptimizer: sparse_params names '", *unknown_sparse.begin(),
             "', which is not a parameter of the ", inner.kind(), " optimizer");
  std::weak_ptr<State> weak = state_;
  for (size_t i = 0; i < state_->entries.size(); ++i) {
    state_->entries[i].param.tensor.register_grad_ready_hook([weak, i](Tensor& g) {
      if (auto s = weak.lock()) s->on_grad_ready(i, g);
    });
  }
}

std::optional<bool> DistributedOptimizerOptions::default_wait_on_device() {
  if (!env::get("KOLO_DEVICE_WAIT")) return std::nullopt;
  return env::get_bool("KOLO_DEVICE_WAIT", false);
}

DistributedOptimizer::~DistributedOptimizer() = default;

const DistributedOptimizerOptions& DistributedOptimizer::options() const { return state_->opt; }

void DistributedOptimizer::zero_grad() {
  std::lock_guard<std::mutex> lock(state_->mu);
  inner_.zero_grad();
  for (auto& e : state_->entries) {
    KOLO_CHECK(!e.enqueued, "DistributedOptimizer: zero_grad() while the exchange of '", e.param.name,
               "' is in flight; call step() or synchronize() first");
    e.delay = state_->opt.backward_passes_per_step;
    // Only parameters known to be dense keep a bound slot; the others must show their gradient's form.
    if (e.kind != Kind::Dense) e.param.tensor.zero_grad();
  }
}

void DistributedOptimizer::synchronize() {
  State& s = *state_;
  std::vector<Handle> handles;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    for (auto& e : s.entries)
      if (!e.enqueued) s.enqueue(e, e.param.tensor.grad(), false);
    for (auto& e : s.entries) {
      if (e.dense.valid()) handles.push_back(e.dense);
      if (e.gathered) {
        handles.push_back(e.indices);
        handles.push_back(e.values);
      }
    }
  }
  // Every handle is waited on even when one fails, so no collective is left reading a freed buffer. With
  // wait_on_device, device gradients are waited for on the compute stream (Handle::wait_device): the host
  // goes on to enqueue the update and the next step while the last buckets are still reduced.
  const int ranks = s.rt.process_set_size(s.opt.process_set);
  const bool on_device = s.opt.wait_on_device.value_or(ranks == 1);
  std::exception_ptr failure;
  try {
    if (on_device)
      wait_all_device(handles);
    else
      wait_all(handles);
  } catch (...) {
    failure = std::current_exception();
  }
  std::lock_guard<std::mutex> lock(s.mu);
  NoGradGuard ng;
  for (auto& e : s.entries) {
    if (!failure && e.gathered) {
      Tensor idx = on_device ? e.indices.wait_device() : e.indices.output();
      Tensor vals = on_device ? e.values.wait_device() : e.values.output();
      const double scale = s.accumulation_scale() / (s.opt.op == ReduceOp::Average ? ranks : 1);
      if (scale != 1.0) scale_(vals, scale);
      e.param.tensor.set_grad(Tensor::sparse_rows(idx, vals, e.param.tensor.shape()));
      s.stats.sparse_gathered_bytes += static_cast<int64_t>(idx.nbytes() + vals.nbytes());
      s.stats.sparse_gathered_rows += idx.numel();
    }
    e.enqueued = false;
    e.gathered = false;
    e.dense = e.indices = e.values = Handle();
    e.delay = s.opt.backward_passes_per_step;
  }
  s.new_step = true;
  ++s.stats.steps;
  if (failure) std::rethrow_exception(failure);
}

bool DistributedOptimizer::step() {
  synchronize();
  if (!state_->guard.allow_step(inner_)) {
    std::lock_guard<std::mutex> lock(state_->mu);
    ++state_->stats.skipped_steps;
    return false;
  }
  inner_.step();
  return true;
}

GradientExchangeStats DistributedOptimizer::stats() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->stats;
}

void DistributedOptimizer::reset_stats() {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->stats = {};
}

std::vector<EnqueueRecord> DistributedOptimizer::enqueue_log() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->log;
}

void broadcast_parameters(Runtime& runtime, const std::vector<NamedParameter>& params, int root, int process_set) {
  std::vector<Handle> handles;
  for (const NamedParameter& p : params) {
    KOLO_CHECK(p.tensor.is_contiguous(), "broadcast_parameters: parameter '", p.name, "' ", p.tensor.describe(),
               " is not contiguous");
    handles.push_back(runtime.broadcast_async(p.tensor.detach(), root, "broadcast.param." + p.name, process_set));
  }
  wait_all(handles);
}

void broadcast_optimizer_state(Runtime& runtime, Optimizer& optimizer, int root, int process_set) {
  OptimizerState st = optimizer.state_dict();
  std::vector<Handle> handles;
  for (auto& [key, t] : st.tensors)
    handles.push_back(runtime.broadcast_async(t, root, "broadcast.optim." + key, process_set));
  // Scalars travel as one f64 tensor in key order; equal key sets on all ranks give equal shapes.
  std::vector<double> scalars;
  for (const auto& [key, v] : st.scalars) scalars.push_back(v);
  Tensor packed = Tensor::from_vector(scalars, {static_cast<int64_t>(scalars.size())});
  handles.push_back(runtime.broadcast_async(packed, root, "broadcast.optim.__scalars", process_set));
  wait_all(handles);
  const std::vector<double> got = packed.to_vector<double>();
  size_t i = 0;
  for (auto& [key, v] : st.scalars) v = got[i++];
  optimizer.load_state_dict(st);
}

std::vector<double> metric_average(Runtime& runtime, const std::vector<double>& values, const std::string& name,
                                   int process_set) {
  Tensor t = Tensor::from_vector(values, {static_cast<int64_t>(values.size())});
  AllreduceOptions o;
  o.op = ReduceOp::Average;
  o.process_set = process_set;
  runtime.allreduce_async(t, "metric." + name, o).wait();
  return t.to_vector<double>();
}

double metric_average(Runtime& runtime, double value, const std::string& name, int process_set) {
  return metric_average(runtime, std::vector<double>{value}, name, process_set)[0];
}

}  // namespace kolo
