// How kolo's host-side polling loops wait (control-plane messages, shared-memory counters): without giving up
// the core for the first microseconds, then politely, then asleep — never a long busy spin.
#pragma once

#include <chrono>
#include <thread>

namespace kolo {

// Call between two polls of something a peer will do; `started` is when this wait began. The first 20 us
// return at once (a peer's message in a busy cycle is usually that close, and a yield on a loaded machine can
// hand the core away for a whole time slice); then yield until 200 us; then sleep 20 us (200 us after 20 ms)
// so the other ranks' threads on the same cores get to run.
inline void poll_pause(std::chrono::steady_clock::time_point started) {
  const auto waited = std::chrono::steady_clock::now() - started;
  if (waited < std::chrono::microseconds(20)) return;
  if (waited < std::chrono::microseconds(200)) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(std::chrono::microseconds(waited < std::chrono::milliseconds(20) ? 20 : 200));
  }
}

}  // namespace kolo
