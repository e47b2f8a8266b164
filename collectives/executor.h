// Executor: runs agreed collectives on the background thread, one FusedGroup at a time, reading top to
// bottom like Horovod's Execute(entries, response): wait for the data → pack into the fusion buffer →
// backend collective → unpack → complete.
//
// Fusion buffer protocol: one persistent host buffer (grown on demand, never shrunk) per runtime. A group's
// tensors get offsets aligned to kFusionAlignment bytes, in the plan's order. Large groups are processed
// in chunks of KOLO_ALLREDUCE_CHUNK_BYTES: pack chunk k (applying prescale and any f16/bf16 compression),
// allreduce it, unpack it (postscale, Average's 1/size, decompression), then chunk k+1 — so no backend call
// exceeds the chunk size (Open MPI's large-message collapse is never hit) and packed data is still in cache
// when reduced. A group of one uncompressed tensor skips the buffer and is reduced in place, also chunked.
// An uncompressed fused group whose backend offers Backend::allreduce_spans (the shared-memory allreduce on
// one node) skips the buffer too: the backend copies straight from and to the tensors.
// Hierarchical allreduce (KOLO_HIERARCHICAL_ALLREDUCE) replaces each chunk's allreduce by a reduce-scatter
// within the node, an allreduce across nodes of this rank's part, and an allgather within the node.
//
// Device (CUDA) tensors: groups whose agreed request names the CUDA device type go to DeviceCollectives
// (device_collectives.h; NCCL), built on first use — a collective step over every rank, members of the
// group's process set or not (prepare()), at the same group, since the device type is part of the agreed
// request — so a CPU-only job never touches CUDA.
// Allreduce groups are fused on the device; the other ops exchange their sizes over the host backend,
// allocate outputs on the device, and move data on the device. execute() returns once the group is
// enqueued, with its DeviceWork; the caller completes the group's handles once finished() reports the
// device work done, so the groups of a cycle are all launched before any of them is waited for.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "collectives/backend_factory.h"
#include "collectives/config.h"
#include "collectives/device_collectives.h"
#include "collectives/handle.h"
#include "collectives/runtime.h"
#include "collectives/timeline.h"
#include "collectives/types.h"

namespace kolo {

// One enqueued tensor op on this rank, from enqueue until its handle completes.
struct TensorEntry {
  using Clock = std::chrono::steady_clock;
  Request req;
  Tensor input;
  Tensor output;                  // allocated at execution for allgather/alltoall/reducescatter
  std::vector<int64_t> splits;    // alltoall
  std::shared_ptr<Event> ready_event;  // device input: recorded on the compute stream at enqueue (a group's
                                       // tensors on one device share one)
  const void* ready_stream = nullptr;  // that stream (native handle)
  uint64_t ready_seq = 0;              // process-wide record order of ready events
  std::shared_ptr<HandleState> state;
  Clock::time_point enqueued;
  Clock::time_point ready;
};

// One device group after execute(): what the device may still read (its inputs' ready events, the event
// of the outputs' allocation, zeros contributed for joined ranks), the fence that marks its collectives,
// and its timeline span. Kept alive until Executor::finished() returns true for it.
struct DeviceWork {
  using Clock = std::chrono::steady_clock;
  explicit DeviceWork(DeviceCollectives& collectives) : d(collectives) {}
  DeviceCollectives& d;
  std::vector<Event*> ready;
  std::unique_ptr<Event> allocated;
  std::vector<Tensor> zeros;
  uint64_t fence = 0;
  Clock::time_point launched;
  const char* activity = "";
  std::string args;
  std::vector<std::string> names;
  // The ready events plus one recorded on this thread's stream once it allocated outputs or zeros there
  // (their memory may have been in use by earlier work).
  const std::vector<Event*>& after_allocation();
};

class Executor {
 public:
  Executor(Backends backends, const Config& config, Timeline& timeline, CollectiveStats& stats);
  ~Executor();
  // Runs one group. `items` are this rank's entries (nullptr where this rank joined and contributes zeros);
  // `params` the agreed requests. Host groups are done on return (nullptr); device groups are enqueued and
  // their work returned, to be completed once finished(). Throws kolo::Error on backend failure.
  std::unique_ptr<DeviceWork> execute(OpType op, const std::vector<TensorEntry*>& items,
                                      const std::vector<Request>& params);
  // Called by every rank for every agreed group before execute() (which only the process set's members
  // call): builds the device backend at the first device group, a collective over all ranks.
  void prepare(OpType op, const Request& p);
  // Polls without blocking: true once `w`'s device work is done (then its timeline span is written).
  // Throws kolo::Error when a device collective failed or timed out.
  bool finished(DeviceWork& w);
  void set_chunk_bytes(int64_t b) { chunk_bytes_ = b; }
  Backend* process_set(int id) const;  // nullptr when this rank is not a member
  // Collective over all ranks: splits the world backend; members get set `id`.
  void create_process_set(int id, const std::vector<int>& ranks);
  void abort(const std::string& reason);
  Backends& backends() { return backends_; }

 private:
  // `p`'s process set, which this rank must belong to (else kolo::Error naming `op` and `p`'s tensor).
  Backend& member_set(const Request& p, const char* op) const;
  void allreduce(const std::vector<TensorEntry*>& items, const std::vector<Request>& params);
  void reduce_chunked(Backend& b, void* buf, int64_t count, DType dtype, ReduceOp op, bool hierarchical);
  void allreduce_on_device(const std::vector<TensorEntry*>& items, const std::vector<Request>& params,
                           DeviceWork& dw);
  // Host buffers, or device ones through `dw` when it is given.
  void allgather(TensorEntry& e, Backend& b, DeviceWork* dw);
  void alltoall(TensorEntry& e, Backend& b, DeviceWork* dw);
  void reducescatter(TensorEntry& e, Backend& b, DeviceWork* dw);
  DeviceCollectives& device_collectives(const Request& p);
  uint8_t* fusion_buffer(int64_t bytes);

  Backends backends_;
  const Config& config_;
  Timeline& timeline_;
  CollectiveStats& stats_;
  int64_t chunk_bytes_;
  // KOLO_HIERARCHICAL_ALLREDUCE where it can apply: nodes of more than one rank, all of the same size.
  bool hierarchical_;
  std::map<int, std::unique_ptr<Backend>> sets_;  // id > 0; id 0 is backends_.world
  std::map<int, std::vector<int>> set_ranks_;     // every set's world ranks (to split device communicators)
  std::unique_ptr<DeviceCollectives> device_;     // built on the first device group; uses backends_
  std::unique_ptr<uint8_t[]> fusion_;
  int64_t fusion_capacity_ = 0;
  std::vector<uint8_t> scratch_;  // hierarchical allreduce's per-rank part
};

}  // namespace kolo
