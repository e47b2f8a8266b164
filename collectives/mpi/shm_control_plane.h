// ShmControlPlane: the coordinator protocol's transport through shared memory, used instead of
// MpiControlPlane when every rank shares this node. A negotiation round trip through Open MPI's point-to-point
// path costs ~2 us on the reference machine when both ranks are running (and tens of us when the cores are
// busy); two cache lines changing hands cost ~0.15 us.
//
// Segment (SharedSegment): for every worker rank r, an "up" mailbox (r -> rank 0) and a "down" mailbox
// (rank 0 -> r). A mailbox has one producer and one consumer: counters `posted` and `taken` on their own cache
// lines, a header (message length, fragment length) and a data area of kMailboxBytes. A message is sent in
// fragments of at most that size: the producer waits until the consumer took the previous fragment
// (taken == posted), writes header and bytes, then publishes posted + 1 (release); the consumer waits for
// posted > taken (acquire), copies the fragment, publishes taken + 1. Usually a message is one fragment and
// the producer never waits.
// Deadlines and messages are those of MpiControlPlane (the heartbeat): a worker silent past the deadline is
// named by the coordinator ("kolo: lost rank N: ..."), a silent coordinator by the workers, and a reply to a
// vanished worker is abandoned after 5 s (the next gather names it).
#pragma once

#include <memory>
#include <vector>

#include "collectives/backend.h"

namespace kolo {

class SharedSegment;

class ShmControlPlane final : public ControlPlane {
 public:
  static constexpr size_t kMailboxBytes = 64 << 10;
  // Collective over MPI_COMM_WORLD (MPI must be initialised): nullptr on every rank when the ranks do not all
  // share this node or the segment cannot be mapped.
  static std::unique_ptr<ShmControlPlane> create();
  ~ShmControlPlane() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void send_to_coordinator(const std::vector<uint8_t>& msg, Clock::time_point deadline) override;
  std::vector<std::vector<uint8_t>> gather_at_coordinator(Clock::time_point deadline) override;
  void send_from_coordinator(const std::vector<uint8_t>& msg, const std::vector<int>& to) override;
  std::vector<uint8_t> receive_from_coordinator(Clock::time_point deadline) override;

 private:
  struct Mailbox;
  ShmControlPlane(std::unique_ptr<SharedSegment> segment, int rank, int size);
  Mailbox mailbox(int worker, bool up) const;

  std::unique_ptr<SharedSegment> segment_;
  int rank_;
  int size_;
};

}  // namespace kolo
