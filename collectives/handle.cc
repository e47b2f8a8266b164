// Handle completion, with the stuck-collective watchdog folded into wait().
#include "collectives/handle.h"

#include <sched.h>

#include <set>
#include <thread>

#include "core/device/device_backend.h"
#include "core/util/error.h"
#include "core/util/logging.h"

namespace kolo {

void RuntimeHealth::check() {
  std::lock_guard<std::mutex> lock(mu);
  if (failure.empty() && !busy_what.empty()) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - busy_since).count();
    if (s > timeout_s) {
      failure = detail::concat("kolo: ", busy_what, " has not completed after ", static_cast<int>(s),
                               " s: a peer rank of this collective is lost or stuck");
      KOLO_LOG(Error, failure);
    }
  }
  if (!failure.empty()) throw Error(failure);
}

void RuntimeHealth::refuse_on_loop_thread(const char* what) const {
  KOLO_CHECK(std::this_thread::get_id() != loop_thread.load(), "kolo: ", what, " inside a collective's callback ",
             "would deadlock: callbacks run on kolo's background thread, which is the thread that completes ",
             "collectives (enqueue from the callback, and wait elsewhere)");
}

void HandleState::finish(const std::string& err) {
  if (finish_quietly(err)) {  // the usual case: no callback, the waiters released at once
    cv.notify_all();
    return;
  }
  std::function<void(const std::string&)> cb;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (finishing) return;
    finishing = true;
    cb = std::move(callback);
  }
  // The callback runs before waiters are released, so whatever it did is visible after wait().
  try {
    cb(err);
  } catch (const std::exception& e) {
    KOLO_LOG(Error, "collective callback threw: ", e.what());
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    done = true;
    error = err;
  }
  cv.notify_all();
}

bool HandleState::finish_quietly(const std::string& err) {
  std::lock_guard<std::mutex> lock(mu);
  if (finishing) return true;
  if (callback) return false;
  finishing = done = true;
  error = err;
  return true;
}

void HandleState::launch(const Tensor& out, std::vector<std::shared_ptr<Event>> done) {
  {
    std::lock_guard<std::mutex> lock(mu);
    output = out;
    device_done = std::move(done);
    launched = true;
  }
  cv.notify_all();
}

bool Handle::poll() const {
  KOLO_CHECK(state_, "poll() on an empty Handle");
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->done;
}

namespace {

// Blocks on `lock` (of state.mu) until `ready()`, checking the runtime's health every 200 ms so a collective
// stuck on a lost peer fails the wait instead of hanging it.
template <typename Ready>
void wait_until(HandleState& state, std::unique_lock<std::mutex>& lock, Ready ready) {
  while (!ready()) {
    if (state.cv.wait_for(lock, std::chrono::milliseconds(200), ready)) break;
    lock.unlock();
    if (state.health) state.health->check();
    lock.lock();
  }
}

// A host wait first spins (yielding) for up to kSpin: most collectives complete within that, and a sleeping
// waiter costs the background thread a futex wake and itself a cross-CPU wake-up (~30 us on a VM). Only where
// this rank's threads and its background thread each have a CPU, counting every rank of the node as sharing
// this thread's CPUs: pinned to a core beside the background thread (mpirun's default for 2 ranks), or with
// more threads than CPUs, the spin would take the CPU from the thread that completes the collective.
constexpr auto kSpin = std::chrono::microseconds(50);

bool may_spin(int local_size) {
  thread_local const int cpus = [] {
    cpu_set_t set;
    return sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
  }();
  return cpus >= 2 * local_size;
}

void spin_until_done(HandleState& state, std::unique_lock<std::mutex>& lock) {
  if (!state.health || !may_spin(state.health->local_size)) return;
  const auto until = std::chrono::steady_clock::now() + kSpin;
  while (!state.done && std::chrono::steady_clock::now() < until) {
    lock.unlock();
    std::this_thread::yield();
    lock.lock();
  }
}

// Counts this thread in RuntimeHealth::host_waiters for as long as it blocks.
struct HostWaiter {
  std::atomic<int>* n;
  explicit HostWaiter(HandleState& state) : n(state.health ? &state.health->host_waiters : nullptr) {
    if (n) ++*n;
  }
  ~HostWaiter() {
    if (n) --*n;
  }
  HostWaiter(const HostWaiter&) = delete;
  HostWaiter& operator=(const HostWaiter&) = delete;
};

// Calls `wait(handle)` for every handle, even after one failed; then rethrows the first failure.
template <typename Wait>
void wait_each(const std::vector<Handle>& handles, Wait wait) {
  std::string first;
  for (const auto& h : handles) {
    try {
      wait(h);
    } catch (const Error& e) {
      if (first.empty()) first = e.what();
    }
  }
  if (!first.empty()) throw Error(first);
}

}  // namespace

void Handle::wait() const {
  KOLO_CHECK(state_, "wait() on an empty Handle");
  std::unique_lock<std::mutex> lock(state_->mu);
  if (!state_->done) {
    if (state_->health) state_->health->refuse_on_loop_thread("Handle::wait()");
    HostWaiter waiting(*state_);
    spin_until_done(*state_, lock);
    wait_until(*state_, lock, [&] { return state_->done; });
  }
  if (!state_->error.empty()) throw Error(state_->error);
}

namespace {

// Handle::wait_device; events in `seen` (if given) are already waited for on the stream and are skipped.
Tensor wait_device_impl(const std::shared_ptr<HandleState>& state, std::set<const Event*>* seen) {
  KOLO_CHECK(state, "wait_device() on an empty Handle");
  std::vector<std::shared_ptr<Event>> done;
  Tensor out;
  {
    std::unique_lock<std::mutex> lock(state->mu);
    if (!state->done && !state->launched) {
      if (state->health) state->health->refuse_on_loop_thread("Handle::wait_device()");
      HostWaiter waiting(*state);
      wait_until(*state, lock, [&] { return state->done || state->launched; });
    }
    if (state->done) {
      if (!state->error.empty()) throw Error(state->error);
      return state->output;
    }
    done = state->device_done;
    out = state->output;
  }
  if (!done.empty()) {
    Stream& s = device_backend(out.device().type).current_stream(out.device().index);
    for (const auto& e : done)
      if (!seen || seen->insert(e.get()).second) e->block(s);
  }
  return out;
}

}  // namespace

Tensor Handle::wait_device() const { return wait_device_impl(state_, nullptr); }

Tensor Handle::output() const {
  wait();
  return state_->output;
}

std::vector<int64_t> Handle::received_splits() const {
  wait();
  return state_->received_splits;
}

int64_t Handle::value() const {
  wait();
  return state_->value;
}

void wait_all_device(const std::vector<Handle>& handles) {
  // The handles of one fused group share its events: each is waited for once.
  std::set<const Event*> seen;
  wait_each(handles, [&](const Handle& h) { wait_device_impl(h.state(), &seen); });
}

void wait_all(const std::vector<Handle>& handles) {
  wait_each(handles, [](const Handle& h) { h.wait(); });
}

}  // namespace kolo
