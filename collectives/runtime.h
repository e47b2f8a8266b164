// Runtime: one collectives engine — config, backends, controller, response cache, fusion buffer,
// timeline, stall inspector and ONE background thread — held in an explicit object (no process globals;
// kolo::init() in ops.h keeps a default one for convenience). User threads only enqueue and wait; every
// backend call happens on the background thread.
//
// Background loop (see controller.h for one cycle's protocol): wait until new work arrives or the cycle
// time elapses; negotiate; execute the agreed groups through the Executor; complete handles (callbacks
// run on this thread); repeat until the shutdown protocol ends it.
// Shutdown: shutdown() (or the destructor) flags this rank; the loop keeps serving until every rank has
// flagged, then requests still pending fail with "shut down" and the backends are released.
// Failure: a lost rank, a stall shutdown or an internal error fails every pending and future request with
// the same message; the loop exits and MPI is not finalised (a dead peer would block it). A background
// thread stuck inside a collective with a dead peer is detached by shutdown(); it co-owns everything it
// touches (RuntimeCore), so destroying the Runtime frees nothing under it.
#pragma once

#include <functional>
#include <optional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "collectives/config.h"
#include "collectives/handle.h"
#include "collectives/types.h"
#include "core/tensor/tensor.h"

namespace kolo {

struct TensorEntry;
struct RuntimeCore;

struct AllreduceOptions {
  ReduceOp op = ReduceOp::Sum;
  double prescale = 1.0;   // applied to the input before reducing
  double postscale = 1.0;  // applied to the result (after Average's 1/size)
  std::optional<Compression> compression;  // unset: Config::compression
  int process_set = 0;
};

// Runs on the background thread, which completes every collective: it may enqueue, but waiting there (Handle::wait,
// wait_device, shutdown) would wait for itself and throws instead. Empty error = success.
using Callback = std::function<void(const std::string& error)>;

// Counters that make fusion and negotiation visible (read with Runtime::stats()).
struct CollectiveStats {
  int64_t cycles = 0;
  int64_t collectives = 0;       // backend collectives issued for tensors (a fused group counts once)
  int64_t tensors = 0;           // tensors completed
  int64_t fused_tensors = 0;     // tensors that shared a collective with at least one other
  int64_t largest_fusion = 0;    // most tensors in one collective
  int64_t cache_hits = 0;        // requests sent as a response-cache bit
  int64_t bytes = 0;             // bytes reduced/moved for tensors
};

class Runtime {
 public:
  explicit Runtime(Config config = Config::from_env());
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  void shutdown();  // collective: returns once every rank called it (or the runtime failed)

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  int cross_rank() const { return cross_rank_; }
  int cross_size() const { return cross_size_; }
  const std::string& backend_name() const { return backend_name_; }
  const Config& config() const { return config_; }
  CollectiveStats stats() const;
  std::string last_stall_report() const;  // coordinator only; empty elsewhere

  // ---- asynchronous ops. `name` must be unique among this rank's in-flight ops and equal on all ranks.
  // Out-of-place when `output` is given (same shape/dtype, contiguous); in place when it is the input or
  // undefined for allreduce/broadcast. Inputs are read at execution time: do not modify them before wait().
  Handle allreduce_async(const Tensor& tensor, const std::string& name, const AllreduceOptions& opts = {},
                         Tensor output = {}, Callback cb = {});
  // Enqueued atomically, so every rank offers them in the same cycle and they fuse when they fit. `cb`
  // runs when the first tensor's collective completed.
  std::vector<Handle> grouped_allreduce_async(const std::vector<Tensor>& tensors,
                                              const std::vector<std::string>& names,
                                              const AllreduceOptions& opts = {}, Callback cb = {});
  // Concatenates every rank's tensor along dim 0 (first dims may differ); the output is allocated.
  Handle allgather_async(const Tensor& tensor, const std::string& name, int process_set = 0, Callback cb = {});
  // In place: every rank ends with `root`'s values (root is a rank of the process set).
  Handle broadcast_async(Tensor tensor, int root, const std::string& name, int process_set = 0, Callback cb = {});
  // Rows splits[r] of dim 0 go to rank r (empty splits: equal parts); the output and received_splits()
  // are allocated/filled at execution.
  Handle alltoall_async(const Tensor& tensor, const std::vector<int64_t>& splits, const std::string& name,
                        int process_set = 0, Callback cb = {});
  // Reduces over ranks and scatters dim 0: rank r gets rows [r*n/size ...) with the first n%size ranks
  // holding one extra row.
  Handle reducescatter_async(const Tensor& tensor, const std::string& name, ReduceOp op = ReduceOp::Sum,
                             int process_set = 0, Callback cb = {});
  Handle barrier_async(int process_set = 0);
  // This rank has no more data: it keeps serving other ranks' allreduces with zeros until every rank
  // joined. value() is the last rank to join.
  Handle join_async();
  // Collective over all ranks: a process set of `ranks` (world ranks); returns its id.
  int add_process_set(std::vector<int> ranks);
  bool in_process_set(int process_set) const;
  int process_set_size(int process_set) const;
  int process_set_rank(int process_set) const;  // -1 outside

  // Timeline hook for other layers (e.g. the training step's phases); no-op when disabled.
  bool timeline_enabled() const;
  void timeline_span(const std::string& row, const std::string& activity,
                     std::chrono::steady_clock::time_point begin, std::chrono::steady_clock::time_point end);

 private:
  Handle enqueue(std::vector<std::shared_ptr<TensorEntry>> entries, Callback cb = {});
  void check_process_set(int process_set, const char* op, const std::string& name) const;

  Config config_;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1, cross_rank_ = 0, cross_size_ = 1;
  std::string backend_name_;
  std::shared_ptr<RuntimeCore> core_;  // shared with the background thread (runtime_core.h)
  std::thread thread_;
};

}  // namespace kolo
