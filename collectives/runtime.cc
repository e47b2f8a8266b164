// The Runtime's enqueue API (validation on the user thread) and its background loop.
#include "collectives/runtime.h"

#include <algorithm>
#include <set>

#include "collectives/backend_factory.h"
#include "collectives/controller.h"
#include "collectives/executor.h"
#include "collectives/response_cache.h"
#include "collectives/timeline.h"
#include "core/util/logging.h"

namespace kolo {
namespace {

using Clock = std::chrono::steady_clock;

Tensor contiguous_cpu(const Tensor& t, const char* op, const std::string& name) {
  KOLO_CHECK(t.defined(), op, " '", name, "': undefined tensor");
  KOLO_CHECK(!t.is_sparse(), op, " '", name, "': sparse tensor (allgather its indices and values instead)");
  KOLO_CHECK(t.device().is_cpu(), op, " '", name, "': ", t.describe(),
             " is not on the CPU (device tensors need the NCCL backend)");
  return t.is_contiguous() ? t : t.contiguous();
}

}  // namespace

// State the background thread owns; kept out of the header so it names no implementation types.
struct RuntimeLoopState {
  std::unique_ptr<Timeline> timeline = std::make_unique<Timeline>();
  std::unique_ptr<ControlPlane> control;
  std::unique_ptr<ResponseCache> cache;
  std::unique_ptr<Controller> controller;
};

Runtime::Runtime(Config config)
    : config_(std::move(config)),
      health_(std::make_shared<RuntimeHealth>()),
      loop_state_(std::make_unique<RuntimeLoopState>()) {
  config_.validate();
  health_->timeout_s = config_.heartbeat_timeout_s;
  process_sets_[0] = {};
  std::promise<void> started;
  auto ready = started.get_future();
  thread_ = std::thread([this, &started] { loop(&started); });
  try {
    ready.get();
  } catch (...) {
    thread_.join();
    throw;
  }
}

Runtime::~Runtime() {
  try {
    shutdown();
  } catch (const std::exception& e) {
    KOLO_LOG(Error, "kolo runtime shutdown: ", e.what());
  }
}

void Runtime::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_requested_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    // A background thread stuck in a collective with a dead peer never returns: leave it behind.
    bool stuck = false;
    try {
      health_->check();
    } catch (const Error&) {
      stuck = true;
    }
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopped_ && !stuck) {
      cv_.wait_for(lock, std::chrono::milliseconds(200));
      lock.unlock();
      try {
        health_->check();
      } catch (const Error&) {
        stuck = true;
      }
      lock.lock();
    }
    lock.unlock();
    if (stopped_) {
      thread_.join();
    } else {
      // The left-behind thread is still inside a backend call: keep what it is using alive (leaked) rather
      // than free it under its feet when this Runtime is destroyed.
      thread_.detach();
      (void)executor_.release();
      (void)loop_state_.release();
    }
  }
}

CollectiveStats Runtime::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

std::string Runtime::last_stall_report() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stall_report_;
}

bool Runtime::in_process_set(int ps) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = process_sets_.find(ps);
  if (it == process_sets_.end()) return false;
  return ps == 0 || std::count(it->second.begin(), it->second.end(), rank_) > 0;
}

int Runtime::process_set_size(int ps) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = process_sets_.find(ps);
  KOLO_CHECK(it != process_sets_.end(), "unknown process set ", ps);
  return ps == 0 ? size_ : static_cast<int>(it->second.size());
}

int Runtime::process_set_rank(int ps) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = process_sets_.find(ps);
  KOLO_CHECK(it != process_sets_.end(), "unknown process set ", ps);
  if (ps == 0) return rank_;
  auto pos = std::find(it->second.begin(), it->second.end(), rank_);
  return pos == it->second.end() ? -1 : static_cast<int>(pos - it->second.begin());
}

void Runtime::check_process_set(int ps, const char* op, const std::string& name) const {
  KOLO_CHECK(in_process_set(ps), op, " '", name, "': rank ", rank_, " is not a member of process set ", ps);
}

void Runtime::timeline_span(const std::string& row, const std::string& activity, Clock::time_point begin,
                            Clock::time_point end) {
  if (loop_state_ && loop_state_->timeline->enabled()) loop_state_->timeline->span(row, activity, begin, end);
}

Handle Runtime::enqueue(std::vector<std::shared_ptr<TensorEntry>> entries, Callback cb) {
  const auto now = Clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!health_->failure.empty() || stopped_ || shutdown_requested_) {
      std::lock_guard<std::mutex> hl(health_->mu);
      throw Error(!health_->failure.empty() ? health_->failure
                                            : detail::concat("kolo: ", op_type_name(entries[0]->req.op), " '",
                                                             entries[0]->req.name, "' after shutdown()"));
    }
    std::set<std::string> names;
    for (auto& e : entries) {
      KOLO_CHECK(!e->req.name.empty(), op_type_name(e->req.op), ": the tensor name is empty (rank ", rank_, ")");
      KOLO_CHECK(!in_flight_.count(e->req.name) && names.insert(e->req.name).second, op_type_name(e->req.op),
                 " '", e->req.name, "': a collective with this name is already in flight on rank ", rank_);
    }
    for (auto& e : entries) {
      e->req.rank = rank_;
      e->enqueued = now;
      e->state = std::make_shared<HandleState>();
      e->state->health = health_;
      if (cb && e == entries[0]) e->state->callback = cb;
      in_flight_[e->req.name] = e;
      queue_.push_back(e);
    }
  }
  cv_.notify_all();
  return Handle(entries[0]->state);
}

Handle Runtime::allreduce_async(const Tensor& tensor, const std::string& name, const AllreduceOptions& opts,
                                Tensor output, Callback cb) {
  check_process_set(opts.process_set, "allreduce", name);
  auto e = std::make_shared<TensorEntry>();
  e->input = contiguous_cpu(tensor, "allreduce", name);
  if (!output.defined()) output = tensor;
  KOLO_CHECK(output.shape() == tensor.shape() && output.dtype() == tensor.dtype() && output.is_contiguous() &&
                 output.device().is_cpu(),
             "allreduce '", name, "': output ", output.describe(), " must be a contiguous CPU tensor like ",
             tensor.describe());
  e->output = output;
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
                                                     const AllreduceOptions& opts) {
  KOLO_CHECK(tensors.size() == names.size(), "grouped_allreduce: ", tensors.size(), " tensors but ", names.size(),
             " names");
  check_process_set(opts.process_set, "grouped_allreduce", names.empty() ? "" : names[0]);
  std::vector<std::shared_ptr<TensorEntry>> entries;
  for (size_t i = 0; i < tensors.size(); ++i) {
    auto e = std::make_shared<TensorEntry>();
    e->input = e->output = contiguous_cpu(tensors[i], "grouped_allreduce", names[i]);
    KOLO_CHECK(tensors[i].is_contiguous(), "grouped_allreduce '", names[i], "': in-place needs a contiguous tensor");
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
  enqueue(entries);
  std::vector<Handle> handles;
  for (auto& e : entries) handles.emplace_back(e->state);
  return handles;
}

Handle Runtime::allgather_async(const Tensor& tensor, const std::string& name, int ps, Callback cb) {
  check_process_set(ps, "allgather", name);
  KOLO_CHECK(tensor.dim() >= 1, "allgather '", name, "': needs at least one dimension, got ", tensor.describe());
  auto e = std::make_shared<TensorEntry>();
  e->input = contiguous_cpu(tensor, "allgather", name);
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
  KOLO_CHECK(tensor.defined() && tensor.is_contiguous() && tensor.device().is_cpu(), "broadcast '", name,
             "': needs a contiguous CPU tensor (in place)");
  auto e = std::make_shared<TensorEntry>();
  e->input = e->output = tensor;
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
  e->input = contiguous_cpu(tensor, "alltoall", name);
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
  e->input = contiguous_cpu(tensor, "reducescatter", name);
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
    std::lock_guard<std::mutex> lock(mu_);
    e->req.name = detail::concat("__barrier.", ps, ".", barrier_counter_++);
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
  e->state->health = health_;
  {
    std::lock_guard<std::mutex> lock(mu_);
    KOLO_CHECK(!join_entry_, "join: rank ", rank_, " already joined");
    KOLO_CHECK(health_->failure.empty() && !stopped_, "join after the runtime stopped");
    join_entry_ = e;
    join_requested_ = true;
  }
  cv_.notify_all();
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
    std::lock_guard<std::mutex> lock(mu_);
    id = static_cast<int>(++process_set_counter_);
  }
  e->req.name = detail::concat("__process_set.", id);
  e->req.op = OpType::ProcessSetCreate;
  e->req.dtype = DType::U8;
  e->req.root = id;
  e->req.ranks.assign(ranks.begin(), ranks.end());
  Handle h = enqueue({e});
  h.wait();
  std::lock_guard<std::mutex> lock(mu_);
  process_sets_[id] = ranks;
  return id;
}

void Runtime::fail_all(const std::string& msg) {
  std::vector<std::shared_ptr<TensorEntry>> victims;
  {
    std::lock_guard<std::mutex> lock(mu_);
    {
      std::lock_guard<std::mutex> hl(health_->mu);
      if (health_->failure.empty()) health_->failure = msg;
    }
    for (auto& [name, e] : in_flight_) victims.push_back(e);
    in_flight_.clear();
    queue_.clear();
    if (join_entry_) victims.push_back(join_entry_);
    join_entry_.reset();
  }
  for (auto& e : victims) e->state->finish(msg);
}

void Runtime::loop(std::promise<void>* started) {
  RuntimeLoopState& st = *loop_state_;
  try {
    Backends b = make_backends(config_);
    rank_ = b.world->rank();
    size_ = b.world->size();
    local_rank_ = b.local_rank;
    local_size_ = b.local_size;
    cross_rank_ = b.cross_rank;
    cross_size_ = b.cross_size;
    backend_name_ = b.name;
    st.control = std::move(b.control);
    st.cache = std::make_unique<ResponseCache>(config_.cache_capacity);
    st.controller = std::make_unique<Controller>(*st.control, config_, *st.cache);
    if (!config_.timeline.empty() && rank_ == 0) st.timeline->open(config_.timeline);
    executor_ = std::make_unique<Executor>(std::move(b), config_, *st.timeline, stats_);
    detail::set_log_rank(rank_);
  } catch (...) {
    started->set_exception(std::current_exception());
    return;
  }
  started->set_value();

  double cycle_ms = config_.cycle_time_ms;
  bool join_sent = false;
  bool shutdown_sent = false;
  auto last_cycle = Clock::now();
  for (;;) {
    std::vector<std::shared_ptr<TensorEntry>> fresh;
    RequestList list;
    {
      std::unique_lock<std::mutex> lock(mu_);
      const auto next = last_cycle + std::chrono::duration_cast<Clock::duration>(
                                         std::chrono::duration<double, std::milli>(cycle_ms));
      cv_.wait_until(lock, next, [&] { 
        return !queue_.empty() || (shutdown_requested_ && !shutdown_sent) || (join_requested_ && !join_sent);
      });
      fresh.swap(queue_);
      list.shutdown = shutdown_requested_;
      list.joined = join_requested_;
    }
    last_cycle = Clock::now();
    join_sent = list.joined;
    shutdown_sent = list.shutdown;
    list.cached_bits.assign(st.cache->words(), 0);
    int64_t hits = 0;
    for (auto& e : fresh) {
      if (auto slot = st.cache->lookup(e->req)) {
        set_bit(list.cached_bits, *slot);
        ++hits;
      } else {
        list.requests.push_back(e->req);
      }
    }

    ResponseList resp;
    try {
      resp = st.controller->cycle(list);
    } catch (const std::exception& e) {
      resp = ResponseList{};
      resp.abort = e.what();
    }
    if (!resp.abort.empty()) {
      KOLO_LOG(Error, resp.abort);
      executor_->abort(resp.abort);
      fail_all(resp.abort);
      break;
    }
    if (resp.fusion_threshold > 0 || resp.cycle_time_ms > 0) cycle_ms = resp.cycle_time_ms;

    // The common ordered list: cached slots in slot order, then full responses in the coordinator's order.
    std::vector<Request> ready;
    for (int64_t slot = 0; slot < static_cast<int64_t>(resp.cached_ready.size()) * 64; ++slot) {
      if (!test_bit(resp.cached_ready, slot)) continue;
      ready.push_back(st.cache->at(slot));
      st.cache->touch(slot);
    }
    std::vector<std::pair<std::shared_ptr<TensorEntry>, std::string>> failed;
    std::shared_ptr<TensorEntry> joined_done;
    int64_t join_value = -1;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& r : resp.responses) {
        if (r.op == OpType::Join) {
          joined_done = std::move(join_entry_);
          join_value = r.params.at(0).root;
          join_requested_ = false;
          join_sent = false;
          continue;
        }
        if (!r.error.empty()) {
          for (const auto& name : r.names) {
            st.cache->erase(name);
            auto it = in_flight_.find(name);
            if (it != in_flight_.end()) {
              failed.emplace_back(it->second, r.error);
              in_flight_.erase(it);
            }
          }
          continue;
        }
        for (const auto& p : r.params) {
          ready.push_back(p);
          st.cache->put(p);
        }
      }
    }
    for (auto& [e, msg] : failed) e->state->finish(msg);
    if (joined_done) {
      joined_done->state->value = join_value;
      joined_done->state->finish("");
    }

    std::vector<TensorEntry*> local(ready.size(), nullptr);
    std::vector<std::shared_ptr<TensorEntry>> owners(ready.size());
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (size_t i = 0; i < ready.size(); ++i) {
        auto it = in_flight_.find(ready[i].name);
        if (it != in_flight_.end()) {
          owners[i] = it->second;
          local[i] = it->second.get();
          local[i]->ready = last_cycle;
        }
      }
    }
    executor_->set_chunk_bytes(config_.allreduce_chunk_bytes);
    const int64_t threshold = resp.fusion_threshold > 0 ? resp.fusion_threshold : config_.fusion_threshold;
    for (const FusedGroup& g : plan_fusion(ready, threshold)) {
      std::vector<TensorEntry*> items;
      std::vector<Request> params;
      for (size_t i : g.items) {
        items.push_back(local[i]);
        params.push_back(ready[i]);
      }
      const bool member = executor_->process_set(params[0].process_set) != nullptr;
      std::string error;
      if (member || g.op == OpType::ProcessSetCreate) {
        const auto t0 = Clock::now();
        for (auto* it : items)
          if (it && st.timeline->enabled()) {
            st.timeline->span(it->req.name, "NEGOTIATE", it->enqueued, it->ready);
            st.timeline->span(it->req.name, "QUEUE", it->ready, t0);
            st.timeline->span(it->req.name, "WAIT_FOR_DATA", t0, Clock::now());
          }
        {
          std::lock_guard<std::mutex> hl(health_->mu);
          health_->busy_since = Clock::now();
          health_->busy_what = detail::concat(op_type_name(g.op), " '", params[0].name, "'",
                                              items.size() > 1 ? " (fused)" : "");
        }
        try {
          executor_->execute(g.op, items, params);
        } catch (const std::exception& e) {
          error = detail::concat(e.what(), " (rank ", rank_, ")");
          KOLO_LOG(Error, error);
        }
        {
          std::lock_guard<std::mutex> hl(health_->mu);
          health_->busy_what.clear();
        }
        if (g.op == OpType::ProcessSetCreate) {
          st.controller->add_process_set(params[0].root, std::vector<int>(params[0].ranks.begin(), params[0].ranks.end()));
          std::lock_guard<std::mutex> lock(mu_);
          process_sets_[params[0].root] = std::vector<int>(params[0].ranks.begin(), params[0].ranks.end());
        }
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (auto* it : items)
          if (it) {
            in_flight_.erase(it->req.name);
            ++stats_.tensors;
          }
      }
      for (auto* it : items)
        if (it) {
          it->state->output = it->output;
          it->state->finish(error);
        }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.cycles;
      stats_.cache_hits += hits;
      if (st.controller->is_coordinator()) stall_report_ = st.controller->last_stall_report();
    }
    if (resp.shutdown) {
      fail_all("kolo: the runtime shut down before this collective was submitted on every rank");
      break;
    }
  }
  st.timeline->close();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
  }
  cv_.notify_all();
}

}  // namespace kolo
