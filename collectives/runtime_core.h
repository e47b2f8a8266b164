// RuntimeCore: everything a Runtime's background thread touches — the queue and in-flight table, flags,
// counters, process sets, health, the negotiation state and the Executor — in one object that the thread
// co-owns with its Runtime (shared_ptr). A thread left behind inside a collective with a dead peer (see
// Runtime::shutdown) therefore never touches freed memory after the Runtime is destroyed: the core, and the
// backends it holds, live until that thread returns (or the process ends).
//
// Locking: `mu` guards the fields marked (mu); the negotiation state and the executor belong to the
// background thread alone; `config` and the topology fields are written once before the Runtime's
// constructor returns and only read afterwards.
#pragma once

#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "collectives/config.h"
#include "collectives/runtime.h"

namespace kolo {

class Controller;
class ControlPlane;
class Executor;
class ResponseCache;
class Timeline;
struct DeviceWork;
struct TensorEntry;

struct RuntimeCore {
  explicit RuntimeCore(Config c);
  ~RuntimeCore();

  // The background thread's body: builds the backends (reporting success or the error through `started`),
  // then runs negotiation cycles (controller.h) until the shutdown protocol or a failure ends them.
  void loop(std::promise<void>* started);
  // Fails every pending and future request with `msg` (the first failure wins).
  void fail_all(const std::string& msg);
  // Completes a group's handles (nullptr entries: this rank joined and contributed zeros), removing the
  // entries from the in-flight table unless they left it at their launch.
  void finish_group(const std::vector<std::shared_ptr<TensorEntry>>& entries, const std::string& error,
                    bool in_table);
  // (background thread) Completes the launched device groups whose work is done, oldest first; with
  // `block`, waits for all of them.
  void complete_launched(bool block);

  const Config config;
  int rank = 0, size = 1, local_rank = 0, local_size = 1, cross_rank = 0, cross_size = 1;
  std::string backend_name;
  std::shared_ptr<RuntimeHealth> health;

  mutable std::mutex mu;
  std::condition_variable cv;
  std::vector<std::shared_ptr<TensorEntry>> queue;                // (mu) enqueued, not yet sent to the coordinator
  std::unordered_map<std::string, std::shared_ptr<TensorEntry>> in_flight;  // (mu) by name, until completed
  std::shared_ptr<TensorEntry> join_entry;                        // (mu)
  bool join_requested = false;                                    // (mu)
  bool shutdown_requested = false;                                // (mu)
  bool stopped = false;                                           // (mu) the loop has ended
  // (mu) The loop sleeps until its cycle time or a wake-up: an enqueue must notify it. In its poll-slice waits
  // (device groups in flight, eager cycles) it looks at the queue on its own within kPollSlice.
  bool sleeping = false;
  int64_t barrier_counter = 0;                                    // (mu)
  int64_t process_set_counter = 0;                                // (mu)
  std::map<int, std::vector<int>> process_sets;                   // (mu) id -> world ranks
  CollectiveStats stats;                                          // (mu)
  std::string stall_report;                                       // (mu)

  std::unique_ptr<Timeline> timeline;  // spans may be added from any thread (Timeline locks itself)
  std::unique_ptr<ControlPlane> control;
  std::unique_ptr<ResponseCache> cache;
  std::unique_ptr<Controller> controller;
  std::unique_ptr<Executor> executor;
  // (background thread) Device groups enqueued by the executor whose handles complete once their work is
  // done, oldest first. Their entries left the in-flight table at the launch (Handle::wait_device may
  // return then), so the next step may submit the same names while these still run.
  struct Launched {
    std::vector<std::shared_ptr<TensorEntry>> entries;
    std::unique_ptr<DeviceWork> work;
  };
  std::deque<Launched> launched;
};

}  // namespace kolo
