// DeviceCollectives: the Executor's collectives on device (CUDA) tensors, one implementation per library
// (NCCL in collectives/nccl/), made by make_device_collectives() in backend_factory.h, so the executor and
// the runtime hold no device code and a CPU-only build compiles without CUDA.
//
// Ordering protocol (Horovod's NCCL ops): every call first makes its communication stream wait for `ready`
// — events recorded on the producers' compute streams when the tensors were enqueued, plus one recorded
// on the background thread's stream after the executor allocated outputs or zeros there — then enqueues
// the collective and returns without a host sync. fence() marks everything issued so far and reached()
// polls that mark without blocking: the background thread launches every group of a cycle, then completes
// each group's handles once its fence is reached — so a finished handle's result is safe for any later
// work on any stream, user threads never wait on the device, and no group waits for the previous one's
// completion before it is launched (they queue on the communication streams, each behind its own ready
// events).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "collectives/memory_runs.h"
#include "collectives/types.h"
#include "core/device/stream.h"

namespace kolo {

// One tensor's device memory: `count` elements read from `in` and written to `out` (may be equal). An in-place
// span that views element `offset` of allocation `storage` may be reduced together with adjacent views of the
// same storage (collectives/memory_runs.h); nullptr keeps it apart.
struct DeviceSpan {
  const void* in;
  void* out;
  int64_t count;
  const void* storage = nullptr;
  int64_t offset = 0;
};

// The spans' runs of adjacent views (collectives/memory_runs.h) when every span is in place; none otherwise.
std::vector<MemoryRun> in_place_runs(const std::vector<DeviceSpan>& spans);

// The reductions a fused device allreduce makes where its tensors lie, one collective each, each reading `in`
// and writing `out`; none: every tensor goes through the fusion buffer. A group with one non-empty tensor is
// that tensor, whatever its layout, so ranks whose layouts differ without being checked (in place on one, out
// of place or a joined rank's zeros on another) still make the same call. Otherwise, with `where_they_lie`,
// the in-place runs when there are at most `max_runs` of them.
std::vector<DeviceSpan> direct_reductions(const std::vector<DeviceSpan>& spans, bool where_they_lie,
                                          size_t max_runs);

class DeviceCollectives {
 public:
  virtual ~DeviceCollectives() = default;
  virtual const char* name() const = 0;
  virtual Device device() const = 0;  // this rank's device; every buffer must live there

  // One collective for all `spans` (fused) with `p`'s reduce op, prescale, postscale and wire compression;
  // Average divides by the process set's size. `hierarchical` (process set 0 only): reduce-scatter in the
  // node, allreduce of this rank's part across nodes, allgather in the node. `where_they_lie` false: every
  // tensor goes through the fusion buffer (the ranks' runs of adjacent views differ).
  virtual void allreduce(const std::vector<DeviceSpan>& spans, const Request& p, bool hierarchical,
                         bool where_they_lie, const std::vector<Event*>& ready) = 0;
  // The Backend contracts of collectives/backend.h, on process set `ps`'s ranks.
  virtual void allgatherv(int ps, const void* send, void* recv, const std::vector<int64_t>& counts, DType dtype,
                          const std::vector<Event*>& ready) = 0;
  virtual void broadcast(int ps, void* buf, int64_t count, DType dtype, int root,
                         const std::vector<Event*>& ready) = 0;
  virtual void alltoallv(int ps, const void* send, const std::vector<int64_t>& send_counts, void* recv,
                         const std::vector<int64_t>& recv_counts, DType dtype, const std::vector<Event*>& ready) = 0;
  // Average (integers: truncating division) and `postscale` are applied on the device.
  virtual void reducescatter(int ps, const void* send, void* recv, const std::vector<int64_t>& counts, DType dtype,
                             ReduceOp op, double postscale, const std::vector<Event*>& ready) = 0;

  // Collective over all ranks: members of process set `id` get a communicator for it.
  virtual void create_process_set(int id, bool member) = 0;
  // A mark of every collective issued so far.
  virtual uint64_t fence() = 0;
  // Polls without blocking: true once everything issued before `fence` has finished. Throws kolo::Error
  // when a collective failed or timed out (the same error on every rank, see NcclBackend).
  virtual bool reached(uint64_t fence) = 0;
  // Events that have all fired once every collective issued so far has finished (one per communication
  // stream that issued work since the previous call; none when nothing was issued since): for waiters
  // on other streams (Handle::wait_device).
  virtual std::vector<std::shared_ptr<Event>> done_events() = 0;
  // Host wait for everything issued; throws like reached().
  virtual void synchronize() = 0;
  virtual void abort(const std::string& reason) = 0;
};

}  // namespace kolo
