// ShmAllreduce: host allreduce among the ranks of one node through one shared-memory segment, used by
// MpiBackend (KOLO_SHM_ALLREDUCE) for buffers of at least 8 KiB and for fused groups. Open MPI's
// shared-memory transport moves each such message with a single-copy system call (page pinning per call),
// which costs ~20 us at 64 KiB on the reference machine; copying through a segment every rank has mapped
// costs a few memcpys of the same bytes.
//
// Segment: one block per rank — three sequence counters on their own cache lines (arrived, reduced, done),
// then a data slot of `slot_bytes`. A buffer is processed in pieces of at most one slot; piece number s
// (counted identically on every rank, because every rank runs the same agreed collectives in the same order):
//   1. wait until every rank has finished reading piece s-1 (done[q] >= s-1), copy this rank's input piece
//      into its slot, publish arrived[me] = s;
//   2. wait until arrived[q] >= s for all q, reduce slice `me` of the piece (a 64-byte-aligned 1/n share)
//      from every slot into this rank's slot (other ranks in rank order), publish reduced[me] = s;
//   3. wait until reduced[q] >= s for all q, copy every rank's reduced slice from its slot to the output,
//      publish done[me] = s.
// Each slice is reduced by exactly one rank, so every rank ends with bitwise identical values. Stores are
// release and loads acquire (std::atomic_ref on the mapping), so a slot's bytes are visible before its counter.
// Waiting polls like the control plane (spin, then yield, then short sleeps) without a deadline of its own,
// exactly like the blocking MPI call it replaces: a peer lost in the middle is caught by Handle::wait's
// watchdog. The segment is a SharedSegment (shared_segment.h).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "collectives/backend.h"
#include "collectives/types.h"
#include "core/tensor/dtype.h"

namespace kolo {

class SharedSegment;

class ShmAllreduce {
 public:
  // Collective over `comm` (an MPI_Comm, kept opaque): nullptr on every rank when the ranks do not all share
  // this node or the segment cannot be created on some rank.
  static std::unique_ptr<ShmAllreduce> create(void* comm, int64_t slot_bytes);
  ~ShmAllreduce();
  ShmAllreduce(const ShmAllreduce&) = delete;
  ShmAllreduce& operator=(const ShmAllreduce&) = delete;

  // `send == recv` is in place. `op` is Sum, Min, Max or Product (bf16/f16 computed in f32).
  void allreduce(const void* send, void* recv, int64_t count, DType dtype, ReduceOp op);
  // The concatenation of `spans` as one buffer: step 1 copies from the spans (times `prescale`) and step 3
  // copies to them (times `postscale`), so a fused group needs no fusion buffer.
  void allreduce_spans(const std::vector<HostSpan>& spans, DType dtype, ReduceOp op, double prescale,
                       double postscale);

 private:
  ShmAllreduce(std::unique_ptr<SharedSegment> segment, int rank, int size, int64_t slot_bytes, size_t block_bytes);
  uint64_t* counter(int rank, int which) const;
  uint8_t* slot(int rank) const;
  void wait_all(int which, uint64_t value) const;

  std::unique_ptr<SharedSegment> segment_;
  uint8_t* base_;
  int rank_;
  int size_;
  int64_t slot_bytes_;
  size_t block_bytes_;  // per rank: counters page + slot
  uint64_t seq_ = 0;    // pieces completed
};

}  // namespace kolo
