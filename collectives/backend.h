// The abstract communication backends: `Backend` moves tensor bytes (the data plane), `ControlPlane`
// carries the coordinator's small messages (negotiation). The controller and the ops see only these
// interfaces; MPI lives in collectives/mpi/, the size-1 loopback in collectives/loopback/, and NCCL (device
// buffers ordered on a Stream) plugs in as another Backend whose control plane is MPI's.
//
// Buffer contract: `send`/`recv` are raw buffers of `count` elements of `dtype` in the backend's memory
// (host memory for MPI and loopback, device memory for NCCL). `send == recv` means in place. `stream` orders
// the work for device backends (nullptr: the backend's own stream / synchronous host work); a host backend
// completes the call before returning. Reduce ops are Sum, Min, Max, Product: Average is a Sum followed by
// a scale that the caller applies. bf16/f16 reductions are computed in f32 by every backend.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "collectives/types.h"
#include "core/device/stream.h"
#include "core/tensor/dtype.h"
#include "core/util/error.h"

namespace kolo {

// One tensor of a fused host allreduce: `count` elements read from `send`, the result written to `recv`
// (which may be `send`).
struct HostSpan {
  const void* send;
  void* recv;
  int64_t count;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual int rank() const = 0;  // rank within this backend's group
  virtual int size() const = 0;
  virtual bool accepts(Device device) const = 0;  // whether buffers may live on `device`

  virtual void allreduce(const void* send, void* recv, int64_t count, DType dtype, ReduceOp op,
                         Stream* stream) = 0;
  // recv holds sum(counts) elements; rank r's `counts[r]` elements land at offset sum(counts[<r]).
  virtual void allgatherv(const void* send, void* recv, const std::vector<int64_t>& counts, DType dtype,
                          Stream* stream) = 0;
  virtual void broadcast(void* buf, int64_t count, DType dtype, int root, Stream* stream) = 0;
  // send_counts[r] elements go to rank r; recv_counts[r] elements arrive from rank r (both packed in rank order).
  virtual void alltoallv(const void* send, const std::vector<int64_t>& send_counts, void* recv,
                         const std::vector<int64_t>& recv_counts, DType dtype, Stream* stream) = 0;
  // send holds sum(counts) elements; this rank receives the reduced block counts[rank()].
  virtual void reducescatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType dtype,
                             ReduceOp op, Stream* stream) = 0;
  // Optional fused path for host buffers: reduces the concatenation of `spans` as one buffer without packing
  // it anywhere first, multiplying by `prescale` on the way in and `postscale` on the way out (folded into
  // the backend's own copies). Returns false, having done nothing, when this backend has no such path for
  // this call (the caller then packs into its fusion buffer); every rank gets the same answer.
  virtual bool allreduce_spans(const std::vector<HostSpan>& spans, DType dtype, ReduceOp op, double prescale,
                               double postscale) {
    (void)spans, (void)dtype, (void)op, (void)prescale, (void)postscale;
    return false;
  }
  virtual void barrier() = 0;
  // Best effort: stop outstanding work so that peers and this rank can leave without hanging.
  virtual void abort(const std::string& reason) = 0;

  // Collective over all ranks of this backend: ranks passing the same color >= 0 form a new backend (ordered
  // by their rank here); a negative color returns nullptr. Mirrors MPI_Comm_split / ncclCommSplit.
  virtual std::unique_ptr<Backend> split(int color) = 0;
};

// A lost peer or a timeout on the control plane: what() names the rank.
class LostRankError : public Error {
 public:
  LostRankError(int lost_rank, const std::string& what) : Error(what), lost_rank_(lost_rank) {}
  int lost_rank() const { return lost_rank_; }

 private:
  int lost_rank_;
};

// The coordinator protocol's transport. Every call has a deadline so a dead peer is named instead of
// waited on forever (heartbeat: ranks talk every cycle, so silence longer than the timeout means death).
class ControlPlane {
 public:
  using Clock = std::chrono::steady_clock;
  virtual ~ControlPlane() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Worker -> coordinator (rank 0). Throws LostRankError(0) when rank 0 is gone.
  virtual void send_to_coordinator(const std::vector<uint8_t>& msg, Clock::time_point deadline) = 0;
  // Coordinator: one message from every other rank, indexed by rank (entry 0 unused). Throws
  // LostRankError(r) naming the first rank still silent at the deadline.
  virtual std::vector<std::vector<uint8_t>> gather_at_coordinator(Clock::time_point deadline) = 0;
  // Coordinator -> every rank in `to` (never blocks on a dead peer).
  virtual void send_from_coordinator(const std::vector<uint8_t>& msg, const std::vector<int>& to) = 0;
  // Worker: the coordinator's reply. Throws LostRankError(0) at the deadline.
  virtual std::vector<uint8_t> receive_from_coordinator(Clock::time_point deadline) = 0;

 protected:
  // The deadline errors, worded alike whichever transport carries the protocol.
  LostRankError coordinator_did_not_take() const {
    return LostRankError(0, detail::concat("kolo: lost rank 0 (the coordinator): it has not taken rank ", rank(),
                                           "'s message before the heartbeat timeout"));
  }
  LostRankError coordinator_did_not_reply() const {
    return LostRankError(0, detail::concat("kolo: lost rank 0 (the coordinator): no reply to rank ", rank(),
                                           " within the heartbeat timeout"));
  }
  // Coordinator: `got[r]` tells whether rank r's message arrived; throws for the first rank that is silent.
  template <typename Flags>
  void throw_first_silent(const Flags& got) const {
    for (int r = 1; r < size(); ++r)
      if (!got[static_cast<size_t>(r)])
        throw LostRankError(r, detail::concat("kolo: lost rank ", r, ": no heartbeat from it within the timeout"));
  }
};

}  // namespace kolo
