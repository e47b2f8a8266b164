// Controller: the negotiation protocol that makes every rank execute the same collectives in the same
// order, whatever order user threads enqueued them in. It talks only to a ControlPlane (never to MPI).
//
// One cycle (run by every rank's background thread, every KOLO_CYCLE_TIME or as soon as work arrives):
//   1. Each rank builds a RequestList of the requests enqueued since its last cycle: a request equal to a
//      ResponseCache entry is one bit, others are serialized in full; plus the shutdown/joined flags.
//   2. Workers send it to the coordinator (rank 0) and wait for the reply; rank 0 gathers one list from
//      every rank. This exchange is also the heartbeat: a rank silent past KOLO_HEARTBEAT_TIMEOUT is
//      named in a LostRankError, and rank 0 tells the survivors (ResponseList.abort) before failing.
//   3. Rank 0 adds the requests to its message table (name -> request per rank). A tensor is ready when
//      every rank of its process set has submitted it (for allreduce, joined ranks count as submitted).
//      Ready tensors are checked for agreement (op, dtype, shape, reduce op, scales, root, set); on any
//      difference the response is an error naming the tensor and the ranks that differ, which every rank
//      raises identically. Ready tensors whose requests all came as cache bits are answered by one bit
//      vector; others by full Responses in the order they became ready. Steady state (nothing pending,
//      no flags, every rank sent the same bits and no full request): those bits are the answer, with no
//      message table work — the same answer the general path gives, at a fraction of its cost.
//   4. Rank 0 also runs the stall inspector and the autotuner, then sends the ResponseList to all ranks.
//   5. Every rank executes: cached-ready slots in slot order, then the full responses; fusion is planned
//      from that common ordered list by plan_fusion(), a pure function, so all ranks fuse identically.
// Shutdown: a rank sets `shutdown` in its lists from then on; when every rank has, rank 0 answers
// shutdown=true, all ranks leave the loop after executing that list, and anything still pending fails.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "collectives/autotune.h"
#include "collectives/backend.h"
#include "collectives/config.h"
#include "collectives/response_cache.h"
#include "collectives/stall_inspector.h"

namespace kolo {

class Controller {
 public:
  using Clock = std::chrono::steady_clock;
  Controller(ControlPlane& control, const Config& config, ResponseCache& cache);
  // One negotiation cycle (steps 2–4). Throws LostRankError when a peer is gone.
  ResponseList cycle(const RequestList& local);
  // Coordinator bookkeeping of process sets (world ranks); set 0 is everybody.
  void add_process_set(int id, const std::vector<int>& ranks) { sets_[id] = ranks; }
  const std::string& last_stall_report() const { return stall_.last_report(); }
  bool is_coordinator() const { return control_.rank() == 0; }

 private:
  struct Pending {
    std::vector<std::optional<Request>> by_rank;
    int submitted = 0;
    bool all_cached = true;
    int64_t slot = -1;
    Clock::time_point first_seen;
  };
  ResponseList coordinate(const std::vector<RequestList>& lists);
  bool steady_state(const std::vector<RequestList>& lists) const;
  void add_request(const Request& r, bool cached, int64_t slot);
  std::optional<Response> check_ready(const std::string& name, Pending& p, bool* cached);
  std::string mismatch_message(const std::string& name, const Pending& p) const;
  Clock::time_point deadline() const;

  ControlPlane& control_;
  const Config& config_;
  ResponseCache& cache_;
  StallInspector stall_;
  std::unique_ptr<Autotuner> autotune_;
  int64_t fusion_threshold_;
  double cycle_time_ms_;
  std::map<int, std::vector<int>> sets_;
  std::map<std::string, Pending> table_;
  std::vector<std::string> order_;  // arrival order of the names in table_
  std::set<int> joined_;
  int last_joined_ = -1;
  std::set<int> shutdown_;
};

// A group of ready tensors executed as one collective.
struct FusedGroup {
  OpType op = OpType::Allreduce;
  std::vector<size_t> items;  // indices into the ordered ready list
};

// Step 5's fusion plan: allreduces are packed greedily, in order, into the earliest open group they can be
// fused with (same dtype, reduce op, scales, process set, compression) while the group, with each tensor's
// offset aligned to kFusionAlignment bytes, stays within `threshold` bytes. Other ops run alone.
constexpr int64_t kFusionAlignment = 64;
std::vector<FusedGroup> plan_fusion(const std::vector<Request>& ready, int64_t threshold);
int64_t wire_bytes(const Request& r);  // bytes a request occupies in the fusion buffer (after compression)

// A fused device group's launches: consecutive [begin, end) ranges of its tensors (`bytes` each, in group
// order) of at most `bucket_bytes` each, a tensor larger than that alone; bucket_bytes 0 gives one range.
std::vector<std::pair<size_t, size_t>> plan_device_buckets(const std::vector<int64_t>& bytes, int64_t bucket_bytes);

}  // namespace kolo
