// Handle completion, with the stuck-collective watchdog folded into wait().
#include "collectives/handle.h"

#include <set>

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

void HandleState::finish(const std::string& err) {
  std::function<void(const std::string&)> cb;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (finishing) return;
    finishing = true;
    if (!callback) {  // the usual case: release the waiters at once, one lock
      done = true;
      error = err;
    }
    cb = std::move(callback);
  }
  if (!cb) {
    cv.notify_all();
    return;
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

void Handle::wait() const {
  KOLO_CHECK(state_, "wait() on an empty Handle");
  std::unique_lock<std::mutex> lock(state_->mu);
  if (!state_->done && state_->health) {
    struct Waiting {  // counted for as long as this thread blocks (see RuntimeHealth::host_waiters)
      std::atomic<int>& n;
      explicit Waiting(std::atomic<int>& c) : n(c) { ++n; }
      ~Waiting() { --n; }
    } waiting(state_->health->host_waiters);
    while (!state_->done) {
      if (state_->cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return state_->done; })) break;
      lock.unlock();
      state_->health->check();
      lock.lock();
    }
  }
  while (!state_->done) state_->cv.wait(lock);  // handles outside a runtime (no health to check)
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
    auto ready = [&] { return state->done || state->launched; };
    while (!ready()) {
      if (state->cv.wait_for(lock, std::chrono::milliseconds(200), ready)) break;
      lock.unlock();
      if (state->health) state->health->check();
      lock.lock();
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
  std::string first;
  for (const auto& h : handles) {
    try {
      wait_device_impl(h.state(), &seen);
    } catch (const Error& e) {
      if (first.empty()) first = e.what();
    }
  }
  if (!first.empty()) throw Error(first);
}

void wait_all(const std::vector<Handle>& handles) {
  std::string first;
  for (const auto& h : handles) {
    try {
      h.wait();
    } catch (const Error& e) {
      if (first.empty()) first = e.what();
    }
  }
  if (!first.empty()) throw Error(first);
}

}  // namespace kolo
