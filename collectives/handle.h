// Handle: the completion of one asynchronous collective. poll() never blocks; wait() blocks and throws
// the collective's kolo::Error (mismatch, lost rank, shutdown) on every rank that submitted it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/device/stream.h"
#include "core/tensor/tensor.h"

namespace kolo {

// Shared between the background thread and handles: a runtime-wide failure and what is executing now,
// so a waiter can notice a collective stuck on a dead peer (the data plane has no deadline of its own).
struct RuntimeHealth {
  std::mutex mu;
  std::string failure;                               // non-empty once the runtime failed
  std::chrono::steady_clock::time_point busy_since;  // start of the current collective
  std::string busy_what;                             // empty when idle
  double timeout_s = 10;
  // Threads blocked in Handle::wait() or in wait_device() before the launch: while there are any, the background
  // thread polls its queue and launched device work in a spin rather than in sleeps, so a waiter sees its
  // collective launched and completed at once.
  std::atomic<int> host_waiters{0};
  int local_size = 1;  // ranks on this node, set before the runtime starts: whether waiters may spin
  // The background thread, which runs callbacks and completes every handle: it must never wait for one.
  std::atomic<std::thread::id> loop_thread{};
  // Throws when failed, or marks the runtime failed when the current collective exceeded the timeout.
  void check();
  // Throws when called on the background thread (from a collective's callback), where `what` would wait for
  // that thread itself: a deadlock that no timeout reports.
  void refuse_on_loop_thread(const char* what) const;
};

struct HandleState {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  bool finishing = false;  // finish() already claimed (its callback may be running)
  std::string error;
  Tensor output;
  std::vector<int64_t> received_splits;  // alltoall: rows received from each rank
  int64_t value = -1;                    // join: last rank to join; add_process_set: the new set's id
  std::function<void(const std::string& error)> callback;  // runs on the background thread, before done
  std::shared_ptr<RuntimeHealth> health;
  // Device collectives: enqueued on the device, finishing once every event of `device_done` has fired.
  bool launched = false;
  std::vector<std::shared_ptr<Event>> device_done;
  void finish(const std::string& err);
  // finish() for a handle without a callback, minus waking its waiters: returns true once it is done (the
  // caller then calls cv.notify_all()), false when a callback is set (call finish() instead). Completing a
  // group's handles first and waking them after lets a thread that waits on each in turn wake only once.
  bool finish_quietly(const std::string& err);
  void launch(const Tensor& out, std::vector<std::shared_ptr<Event>> done);
};

class Handle {
 public:
  Handle() = default;
  explicit Handle(std::shared_ptr<HandleState> s) : state_(std::move(s)) {}
  bool valid() const { return state_ != nullptr; }
  bool poll() const;         // true once finished (successfully or not)
  void wait() const;         // throws kolo::Error when the collective failed
  // Device collectives, as a PyTorch NCCL work's wait(): blocks only until the collective is enqueued on the
  // device, then makes the calling thread's current stream on the result's device wait for it (no host
  // wait), and returns the result tensor. Throws what failed before the launch; a device failure after it
  // fails the runtime, so the next collective throws it, on every rank. Host collectives: output().
  Tensor wait_device() const;
  Tensor output() const;     // waits; the result tensor (the input itself for in-place ops)
  std::vector<int64_t> received_splits() const;  // waits; alltoall only
  int64_t value() const;     // waits; join: last rank that joined
  const std::shared_ptr<HandleState>& state() const { return state_; }

 private:
  std::shared_ptr<HandleState> state_;
};

// Waits for all handles; rethrows the first failure after all have finished.
void wait_all(const std::vector<Handle>& handles);
// Handle::wait_device for all handles (each device event waited for once); rethrows the first failure after
// all were waited for.
void wait_all_device(const std::vector<Handle>& handles);

}  // namespace kolo
