// The Runtime's enqueue API (validation on the user thread), construction and shutdown; the background
// loop is RuntimeCore::loop (runtime_core.cc).
#include "collectives/runtime.h"

#include <algorithm>
#include <mutex>

#include "collectives/executor.h"
#include "collectives/runtime_core.h"
#include "collectives/timeline.h"
#include "core/device/device_backend.h"
#include "core/util/logging.h"

namespace kolo {
namespace {

using Clock = std::chrono::steady_clock;

// Host or device tensors; a strided one is copied (on the device: on the current stream, before the
// ready event is recorded).
Tensor contiguous_input(const Tensor& t, const char* op, const std::string& name) {
  KOLO_CHECK(t.defined(), op, " '", name, "': undefined tensor");
  KOLO_CHECK(!t.is_sparse(), op, " '", name, "': sparse tensor (allgather its indices and values instead)");
  return t.is_contiguous() ? t : t.contiguous();
}

// Entry `e` reads its `input`: record where it lives and, for a device tensor, an event on the calling thread's
// current (compute) stream that the communication stream will wait on — no host sync here.
void record_ready(TensorEntry& e) {
  const Device d = e.input.device();
  e.req.device = d.type;
  if (d.is_cpu()) return;
  DeviceBackend& b = device_backend(d.type);
  Stream& s = b.current_stream(d.index);
  e.ready_event = b.create_event(d.index);
  // The sequence number follows the record order on every stream (one lock for both), so the executor may
  // wait for only the latest ready event of each stream in a bucket.
  static std::mutex record_mu;
  static uint64_t records = 0;
  std::lock_guard<std::mutex> lock(record_mu);
  e.ready_event->record(s);
  e.ready_stream = s.native();
  e.ready_seq = ++records;
}

void bind_input(TensorEntry& e, const Tensor& t) {
  e.input = t;
  record_ready(e);
}

// A group's entries, once every tensor was made ready: one event per device covers all of its tensors there,
// recorded for the first and shared by the others.
void record_group_ready(const std::vector<std::shared_ptr<TensorEntry>>& entries) {
  std::vector<const TensorEntry*> recorded;  // the first device entry of each device, holding its event
  for (const auto& e : entries) {
    const Device d = e->input.device();
    auto same = std::find_if(recorded.begin(), recorded.end(),
                             [&](const TensorEntry* r) { return r->input.device() == d; });
    if (same == recorded.end()) {
      record_ready(*e);
      if (!d.is_cpu()) recorded.push_back(e.get());
      continue;
    }
    e->req.device = d.type;
    e->ready_event = (*same)->ready_event;
    e->ready_stream = (*same)->ready_stream;
    e->ready_seq = (*same)->ready_seq;
  }
}

}  // namespace

Runtime::Runtime(Config config) {
  config.validate();
  config_ = config;
  core_ = std::make_shared<RuntimeCore>(std::move(config));
  std::promise<void> started;
  auto ready = started.get_future();
  // The thread co-owns the core: if shutdown() has to leave it behind, nothing it uses is freed under it.
  thread_ = std::thread([core = core_, &started] { core->loop(&started); });
  try {
    ready.get();
  } catch (...) {
    thread_.join();
    throw;
  }
  rank_ = core_->rank;
  size_ = core_->size;
  local_rank_ = core_->local_rank;
  local_size_ = core_->local_size;
  cross_rank_ = core_->cross_rank;
  cross_size_ = core_->cross_size;
  backend_name_ = core_->backend_name;
}

Runtime::~Runtime() {
  try {
    shutdown();
  } catch (const std::exception& e) {
    KOLO_LOG(Error, "kolo runtime shutdown: ", e.what());
  }
}

void Runtime::shutdown() {
  RuntimeCore& c = *core_;
  c.health->refuse_on_loop_thread("Runtime::shutdown()");
  {
    std::lock_guard<std::mutex> lock(c.mu);
    c.shutdown_requested = true;
  }
  c.cv.notify_all();
  if (!thread_.joinable()) return;
  // A background thread stuck in a collective with a dead peer never returns: leave it behind. It keeps
  // its share of the core (and so the backends it is blocked in) alive; this Runtime drops its own.
  auto stuck = [&] {
    try {
      c.health->check();
      return false;
    } catch (const Error&) {
      return true;
    }
  };
  bool left_behind = stuck();
  {
    std::unique_lock<std::mutex> lock(c.mu);
    while (!c.stopped && !left_behind) {
      c.cv.wait_for(lock, std::chrono::milliseconds(200));
      lock.unlock();
      left_behind = stuck();
      lock.lock();
    }
    left_behind = !c.stopped;
  }
  if (left_behind)
    thread_.detach();
  else
    thread_.join();
}

CollectiveStats Runtime::stats() const {
  std::lock_guard<std::mutex> lock(core_->mu);
  return core_->stats;
}

std::string Runtime::last_stall_report() const {
  std::lock_guard<std::mutex> lock(core_->mu);
  return core_->stall_report;
}

bool Runtime::in_process_set(int ps) const {
  if (ps == 0) return true;  // every rank, always: no lock on every enqueue's path
  std::lock_guard<std::mutex> lock(core_->mu);
  auto it = core_->process_sets.find(ps);
  if (it == core_->process_sets.end()) return false;
  return std::count(it->second.begin(), it->second.end(), rank_) > 0;
}

int Runtime::process_set_size(int ps) const {
  std::lock_guard<std::mutex> lock(core_->mu);
  auto it = core_->process_sets.find(ps);
  KOLO_CHECK(it != core_->process_sets.end(), "unknown process set ", ps);
  return ps == 0 ? size_ : static_cast<int>(it->second.size());
}

int Runtime::process_set_rank(int ps) const {
  std::lock_guard<std::mutex> lock(core_->mu);
  auto it = core_->process_sets.find(ps);
  KOLO_CHECK(it != core_->process_sets.end(), "unknown process set ", ps);
  if (ps == 0) return rank_;
  auto pos = std::find(it->second.begin(), it->second.end(), rank_);
  return pos == it->second.end() ? -1 : static_cast<int>(pos - it->second.begin());
}

void Runtime::check_process_set(int ps, const char* op, const std::string& name) const {
  KOLO_CHECK(in_process_set(ps), op, " '", name, "': rank ", rank_, " is not a member of process set ", ps);
}

bool Runtime::timeline_enabled() const { return core_->timeline->enabled(); }

void Runtime::timeline_span(const std::string& row, const std::string& activity, Clock::time_point begin,
                            Clock::time_point end) {
  if (core_->timeline->enabled()) core_->timeline->span(row, activity, begin, end);
}

Handle Runtime::enqueue(std::vector<std::shared_ptr<TensorEntry>> entries, Callback cb) {
  const auto now = Clock::now();
  for (auto& e : entries) {  // allocated before the lock, which the background thread contends for
    e->req.rank = rank_;
    e->enqueued = now;
    e->state = std::make_shared<HandleState>();
    e->state->health = core_->health;
  }
  if (cb) entries[0]->state->callback = std::move(cb);
  bool wake;
  {
    std::lock_guard<std::mutex> lock(core_->mu);
    if (!core_->health->failure.empty() || core_->stopped || core_->shutdown_requested) {
      std::lock_guard<std::mutex> hl(core_->health->mu);
      throw Error(!core_->health->failure.empty() ? core_->health->failure
                                            : detail::concat("kolo: ", op_type_name(entries[0]->req.op), " '",
                                                             entries[0]->req.name, "' after shutdown()"));
    }
    // The in-flight table also catches a name repeated within the group; on a rejected name the names this
    // call already claimed are given back, so nothing of the group stays behind.
    for (size_t i = 0; i < entries.size(); ++i) {
      const Request& r = entries[i]->req;
      const bool named = !r.name.empty();
      if (named && core_->in_flight.emplace(r.name, entries[i]).second) continue;
      for (size_t j = 0; j < i; ++j) core_->in_flight.erase(entries[j]->req.name);
      KOLO_CHECK(named, op_type_name(r.op), ": the tensor name is empty (rank ", rank_, ")");
      KOLO_FAIL(op_type_name(r.op), " '", r.name, "': a collective with this name is already in flight on rank ", rank_);
    }
    // Only a sleeping background thread is woken, once: a wake-up costs this (often the training) thread a
    // futex call and a cross-CPU interrupt, 5-15 us on a VM, and while device groups are in flight the loop
    // polls the queue every kPollSlice anyway. During a backward pass that is nearly every gradient.
    wake = core_->sleeping;
    core_->sleeping = false;
    core_->queue.insert(core_->queue.end(), entries.begin(), entries.end());
  }
  if (wake) core_->cv.notify_all();
  return Handle(entries[0]->state);
}

Handle Runtime::allreduce_async(const Tensor& tensor, const std::string& name, const AllreduceOptions& opts,
                                Tensor output, Callback cb) {
  check_process_set(opts.process_set, "allreduce", name);
  auto e = std::make_shared<TensorEntry>();
  Tensor input = contiguous_input(tensor, "allreduce", name);
  if (!output.defined()) output = tensor;
  KOLO_CHECK(output.shape() == tensor.shape() && output.dtype() == tensor.dtype() && output.is_contiguous() &&
                 output.device() == tensor.device(),
             "allreduce '", name, "': output ", output.describe(), " must be a contiguous tensor on the device of ",
             tensor.describe());
  e->output = output;
  bind_input(*e, input);
  Request& r = e->req;
  r.name = name;
  r.op = OpType::Allreduce;
  r.reduce = opts.op;
  r.dtype = tensor.dtype();
  r.shape = tensor.shape();
  r.prescale = opts.prescale;
  r.postscale = opts.postscale;
  r.process_set = opts.process_set;
  r.compression = opts.compression.value_or(config_.compression);
  if (!(r.dtype == DType::F32 || r.dtype == DType::F64)) r.compression = Compression::None;
  KOLO_CHECK(r.compression == Compression::None || r.reduce == ReduceOp::Sum || r.reduce == ReduceOp::Average,
             "allreduce '", name, "': ", compression_name(r.compression), " compression supports sum/average, not ",
             reduce_op_name(r.reduce));
  KOLO_CHECK(is_floating(r.dtype) || (r.prescale == 1.0 && r.postscale == 1.0), "allreduce '", name,
             "': scale factors need a floating dtype, got ", dtype_name(r.dtype));
  KOLO_CHECK(r.dtype != DType::U8, "allreduce '", name, "': u8 tensors are not reducible");
  return enqueue({e}, std::move(cb));
}

std::vector<Handle> Runtime::grouped_allreduce_async(const std::vector<Tensor>& tensors,
                                                     const std::vector<std::string>& names,
                                                     const AllreduceOptions& opts, Callback cb) {
  KOLO_CHECK(tensors.size() == names.size(), "grouped_allreduce: ", tensors.size(), " tensors but ", names.size(),
             " names");
  check_process_set(opts.process_set, "grouped_allreduce", names.empty() ? "" : names[0]);
  std::vector<std::shared_ptr<TensorEntry>> entries;
  for (size_t i = 0; i < tensors.size(); ++i) {
    auto e = std::make_shared<TensorEntry>();
    e->output = contiguous_input(tensors[i], "grouped_allreduce", names[i]);
    KOLO_CHECK(tensors[i].is_contiguous(), "grouped_allreduce '", names[i], "': in-place needs a contiguous tensor");
    e->input = e->output;
    Request& r = e->req;
    r.name = names[i];
    r.op = OpType::Allreduce;
    r.reduce = opts.op;
    r.dtype = tensors[i].dtype();
    r.shape = tensors[i].shape();
    r.prescale = opts.prescale;
    r.postscale = opts.postscale;
    r.process_set = opts.process_set;
    r.compression = (r.dtype == DType::F32 || r.dtype == DType::F64) ? opts.compression.value_or(config_.compression)
                                                                      : Compression::None;
    entries.push_back(e);
  }
  if (entries.empty()) return {};
  record_group_ready(entries);
  enqueue(entries, std::move(cb));
  std::vector<Handle> handles;
  for (auto& e : entries) handles.emplace_back(e->state);
  return handles;
}

Handle Runtime::allgather_async(const Tensor& tensor, const std::string& name, int ps, Callback cb) {
  check_process_set(ps, "allgather", name);
  KOLO_CHECK(tensor.dim() >= 1, "allgather '", name, "': needs at least one dimension, got ", tensor.describe());
  auto e = std::make_shared<TensorEntry>();
  bind_input(*e, contiguous_input(tensor, "allgather", name));
  e->req.name = name;
  e->req.op = OpType::Allgather;
  e->req.dtype = tensor.dtype();
  e->req.shape = tensor.shape();
  e->req.process_set = ps;
  return enqueue({e}, std::move(cb));
}

Handle Runtime::broadcast_async(Tensor tensor, int root, const std::string& name, int ps, Callback cb) {
  check_process_set(ps, "broadcast", name);
  KOLO_CHECK(root >= 0 && root < process_set_size(ps), "broadcast '", name, "': root ", root,
             " out of range for process set ", ps, " of size ", process_set_size(ps));
  KOLO_CHECK(tensor.defined() && !tensor.is_sparse() && tensor.is_contiguous(), "broadcast '", name,
             "': needs a contiguous dense tensor (in place), got ", tensor.describe());
  auto e = std::make_shared<TensorEntry>();
  e->output = tensor;
  bind_input(*e, tensor);
  e->req.name = name;
  e->req.op = OpType::Broadcast;
  e->req.dtype = tensor.dtype();
  e->req.shape = tensor.shape();
  e->req.root = root;
  e->req.process_set = ps;
  return enqueue({e}, std::move(cb));
}

Handle Runtime::alltoall_async(const Tensor& tensor, const std::vector<int64_t>& splits, const std::string& name,
                               int ps, Callback cb) {
  check_process_set(ps, "alltoall", name);
  KOLO_CHECK(tensor.dim() >= 1, "alltoall '", name, "': needs at least one dimension, got ", tensor.describe());
  const int n = process_set_size(ps);
  auto e = std::make_shared<TensorEntry>();
  bind_input(*e, contiguous_input(tensor, "alltoall", name));
  if (splits.empty()) {
    KOLO_CHECK(tensor.size(0) % n == 0, "alltoall '", name, "': first dimension ", tensor.size(0),
               " is not divisible by ", n, " ranks; pass splits");
    e->splits.assign(n, tensor.size(0) / n);
  } else {
    KOLO_CHECK(static_cast<int>(splits.size()) == n, "alltoall '", name, "': ", splits.size(), " splits for ", n,
               " ranks");
    int64_t sum = 0;
    for (int64_t s : splits) {
      KOLO_CHECK(s >= 0, "alltoall '", name, "': negative split ", s);
      sum += s;
    }
    KOLO_CHECK(sum == tensor.size(0), "alltoall '", name, "': splits sum to ", sum, " but the first dimension is ",
               tensor.size(0));
    e->splits = splits;
  }
  e->req.name = name;
  e->req.op = OpType::Alltoall;
  e->req.dtype = tensor.dtype();
  e->req.shape = tensor.shape();
  e->req.process_set = ps;
  return enqueue({e}, std::move(cb));
}

Handle Runtime::reducescatter_async(const Tensor& tensor, const std::string& name, ReduceOp op, int ps,
                                    Callback cb) {
  check_process_set(ps, "reducescatter", name);
  KOLO_CHECK(tensor.dim() >= 1, "reducescatter '", name, "': needs at least one dimension, got ", tensor.describe());
  KOLO_CHECK(tensor.dtype() != DType::U8, "reducescatter '", name, "': u8 tensors are not reducible");
  auto e = std::make_shared<TensorEntry>();
  bind_input(*e, contiguous_input(tensor, "reducescatter", name));
  e->req.name = name;
  e->req.op = OpType::Reducescatter;
  e->req.reduce = op;
  e->req.dtype = tensor.dtype();
  e->req.shape = tensor.shape();
  e->req.process_set = ps;
  return enqueue({e}, std::move(cb));
}

Handle Runtime::barrier_async(int ps) {
  check_process_set(ps, "barrier", "");
  auto e = std::make_shared<TensorEntry>();
  {
    std::lock_guard<std::mutex> lock(core_->mu);
    e->req.name = detail::concat("__barrier.", ps, ".", core_->barrier_counter++);
  }
  e->req.op = OpType::Barrier;
  e->req.dtype = DType::U8;
  e->req.process_set = ps;
  return enqueue({e});
}

Handle Runtime::join_async() {
  auto e = std::make_shared<TensorEntry>();
  e->req.name = "__join";
  e->req.op = OpType::Join;
  e->state = std::make_shared<HandleState>();
  e->state->health = core_->health;
  {
    std::lock_guard<std::mutex> lock(core_->mu);
    KOLO_CHECK(!core_->join_entry, "join: rank ", rank_, " already joined");
    KOLO_CHECK(core_->health->failure.empty() && !core_->stopped, "join after the runtime stopped");
    core_->join_entry = e;
    core_->join_requested = true;
  }
  core_->cv.notify_all();
  return Handle(e->state);
}

int Runtime::add_process_set(std::vector<int> ranks) {
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  KOLO_CHECK(!ranks.empty() && ranks.front() >= 0 && ranks.back() < size_, "add_process_set: ranks must lie in [0, ",
             size_, ")");
  auto e = std::make_shared<TensorEntry>();
  int id;
  {
    std::lock_guard<std::mutex> lock(core_->mu);
    id = static_cast<int>(++core_->process_set_counter);
  }
  e->req.name = detail::concat("__process_set.", id);
  e->req.op = OpType::ProcessSetCreate;
  e->req.dtype = DType::U8;
  e->req.root = id;
  e->req.ranks.assign(ranks.begin(), ranks.end());
  Handle h = enqueue({e});
  h.wait();
  std::lock_guard<std::mutex> lock(core_->mu);
  core_->process_sets[id] = ranks;
  return id;
}

}  // namespace kolo
