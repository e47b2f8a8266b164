// NCCL implementation of Backend on CUDA device buffers, bootstrapped over a host Backend (MPI).
//
// Bootstrap: rank 0 of the host backend creates an ncclUniqueId and broadcasts its bytes over that backend;
// every rank then joins with ncclCommInitRankConfig on its own CUDA device (cuda_device_for_local_rank).
// Streams: KOLO_NUM_NCCL_STREAMS dedicated non-blocking streams, each with its own communicator (a split
// of the first), picked round-robin per call; the sequence of calls is the same on every rank, so the
// same stream/communicator carries the same collective everywhere.
// Ordering, never a host sync on the hot path: a call given a compute `stream` records a ready event on
// it, the communication stream waits on that event, the collective runs, a done event is recorded and
// the compute stream waits on it — so later kernels on `stream` see the result. With stream == nullptr
// the work is ordered on the communication stream only; synchronize() waits for it.
// Small collectives given a compute stream (at most KOLO_NCCL_INLINE_BYTES, default 1 MiB; 0: never) run on
// that stream itself: the two cross-stream event hops cost more than such a collective's own latency, and
// its result is usually needed by the very next kernel. One communicator's collectives still run one after
// another: a collective whose predecessor on the communicator went to another stream and may still run
// waits for that predecessor's done event.
// Failure: every call first polls ncclCommGetAsyncError and the age of the oldest unfinished collective.
// An asynchronous NCCL error, or no progress within KOLO_NCCL_TIMEOUT seconds, aborts the communicators
// (ncclCommAbort) and throws a kolo::Error whose text names only the collective's sequence number and op,
// so every rank that fails at the same collective reports the same message (NCCL's own reason is logged
// with the rank). After that every call throws the same error.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "collectives/backend.h"

#define KOLO_NCCL_CHECK(call)                                                                       \
  do {                                                                                              \
    const ncclResult_t kolo_nccl_rc_ = (call);                                                      \
    if (kolo_nccl_rc_ != ncclSuccess)                                                               \
      KOLO_FAIL("NCCL call ", #call, " failed: ", ncclGetErrorString(kolo_nccl_rc_), " (",        \
                static_cast<int>(kolo_nccl_rc_), ")");                                              \
  } while (0)

namespace kolo {

struct NcclOptions {
  int num_streams = 1;    // KOLO_NUM_NCCL_STREAMS
  double timeout_s = 60;  // KOLO_NCCL_TIMEOUT: a collective unfinished after this long aborts the communicator
  int64_t inline_bytes = int64_t{1} << 20;  // KOLO_NCCL_INLINE_BYTES: run smaller ones on the caller's stream
  static NcclOptions from_env();
};

// The CUDA device of the rank with `local_rank` on its node: local_rank modulo the visible devices, as the
// CUDA runtime numbers them after CUDA_VISIBLE_DEVICES (indices or GPU/MIG UUIDs) — kolo never reads that
// variable itself, so MIG slices and shared GPUs work as the runtime exposes them. Throws when no device
// is visible.
int cuda_device_for_local_rank(int local_rank);
int visible_cuda_devices();  // 0 when the driver or a device is missing (never throws)

// NCCL's names for a dtype and a reduce op. Average is ncclAvg, which NCCL takes for floating types only:
// callers lower an integer Average to Sum and a division.
ncclDataType_t nccl_type(DType dtype);
ncclRedOp_t nccl_op(ReduceOp op);

class NcclBackend final : public Backend {
 public:
  // Collective over `bootstrap`: the new backend has its ranks and runs on CUDA device `device`.
  NcclBackend(Backend& bootstrap, int device, NcclOptions options = NcclOptions::from_env());
  ~NcclBackend() override;
  NcclBackend(const NcclBackend&) = delete;
  NcclBackend& operator=(const NcclBackend&) = delete;

  const char* name() const override { return "nccl"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool accepts(Device device) const override { return device.is_cuda() && device.index == device_; }
  int device() const { return device_; }

  // ReduceOp::Average is accepted here (ncclAvg) for floating dtypes.
  void allreduce(const void* send, void* recv, int64_t count, DType dtype, ReduceOp op, Stream* stream) override;
  // Uneven counts: one grouped ncclBroadcast per rank; even counts: ncclAllGather.
  void allgatherv(const void* send, void* recv, const std::vector<int64_t>& counts, DType dtype,
                  Stream* stream) override;
  void broadcast(void* buf, int64_t count, DType dtype, int root, Stream* stream) override;
  // Grouped ncclSend/ncclRecv pairs.
  void alltoallv(const void* send, const std::vector<int64_t>& send_counts, void* recv,
                 const std::vector<int64_t>& recv_counts, DType dtype, Stream* stream) override;
  // Even counts: ncclReduceScatter; uneven: one grouped ncclReduce per rank.
  void reducescatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType dtype, ReduceOp op,
                     Stream* stream) override;
  void barrier() override;  // a one-element allreduce, then synchronize()
  void abort(const std::string& reason) override;
  std::unique_ptr<Backend> split(int color) override;

  // ---- for the fusion and hierarchical layers, which issue several NCCL calls as one collective.
  // Starts a collective named `op` of `bytes`: polls for failure, picks the next communicator and its
  // stream and makes it wait for `ready` (a compute stream, or nullptr) — or, for at most
  // options().inline_bytes with a `ready` stream, picks that stream itself. Returns the stream to enqueue on.
  cudaStream_t begin(const char* op, Stream* ready, int64_t bytes = INT64_MAX);
  // Ends it: records the done event (the watchdog's progress marker) and makes `consumer` wait on it.
  void end(Stream* consumer);
  // The next begin() also makes its stream wait for `event` (nullptr: nothing to wait for); for ready
  // events recorded on other streams and for chaining steps that may land on different streams.
  void await_next(cudaEvent_t event);
  // The done event of the last collective still unfinished (nullptr when all have finished).
  cudaEvent_t last_done() const { return pending_.empty() ? nullptr : pending_.back().done; }
  ncclComm_t comm() const { return comms_[current_]; }
  const std::vector<cudaStream_t>& streams() const { return streams_; }
  // Host wait for everything enqueued so far, polling for errors and the timeout (off the hot path:
  // barriers, host staging, tests and benchmarks).
  void synchronize();
  // Throws the backend's error if it has failed (asynchronous error or timeout); cheap when healthy.
  void poll();
  // Sequence number of the last collective issued (0: none yet).
  int64_t issued() const { return seq_; }
  // Polls; true once every collective up to sequence number `seq` has finished.
  bool finished_through(int64_t seq) {
    poll();
    return pending_.empty() || pending_.front().seq > seq;
  }

 private:
  NcclBackend(int device, NcclOptions options, std::vector<ncclComm_t> comms);
  void create_streams();
  void fail(const std::string& reason);
  void check_async_errors();                                  // ncclCommGetAsyncError on every communicator
  void check_age(std::chrono::steady_clock::time_point now);  // the timeout of the oldest unfinished collective
  cudaEvent_t take_event();

  struct Pending {
    cudaEvent_t done;
    int64_t seq;
    const char* op;
    std::chrono::steady_clock::time_point started;
  };

  int device_;
  NcclOptions options_;
  std::vector<ncclComm_t> comms_;
  std::vector<cudaStream_t> streams_;
  int rank_ = 0, size_ = 1;
  int current_ = 0;             // stream/communicator of the collective being issued
  cudaStream_t active_ = nullptr;  // the stream it is issued on (its communication stream, or inline)
  // Per communicator: the last collective's sequence number, done event and stream.
  std::vector<int64_t> last_seq_;
  std::vector<cudaEvent_t> last_done_;
  std::vector<cudaStream_t> last_stream_;
  int next_ = 0;                // round-robin cursor
  int64_t seq_ = 0;             // collectives issued on this backend
  const char* current_op_ = "";
  std::deque<Pending> pending_;         // unfinished collectives, oldest first
  std::vector<cudaEvent_t> free_events_;
  cudaEvent_t ready_event_ = nullptr;
  std::vector<cudaEvent_t> awaited_;  // consumed by the next begin()
  void* barrier_buf_ = nullptr;
  std::string error_;           // set once failed; every later call throws it
  std::chrono::steady_clock::time_point last_error_check_;  // of ncclCommGetAsyncError
};

}  // namespace kolo
