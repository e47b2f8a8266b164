// Where a step's time goes, per kernel slot: every kernel called through core/ops/dispatch.h while the
// profiler is on records its host time and, on CUDA, a pair of timing events on the current stream, so a
// training step splits into conv, GEMM, attention, memory-bound kernels and the optimizer, and the rest of
// the wall time is launch gaps / host work outside kernels. Off (the default) it costs one relaxed load per
// kernel call. Kernels called from inside another kernel are counted in the outer one.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/device/device.h"

namespace kolo {

class Event;

struct KernelStat {
  std::string name;
  Device device;
  int64_t calls = 0;
  double host_ms = 0;    // wall time on the calling thread (launch cost on CUDA, the work itself on CPU)
  double device_ms = 0;  // between the timing events on the stream (CPU: equals host_ms)
};

class KernelProfiler {
 public:
  static bool active() { return active_.load(std::memory_order_relaxed); }
  // Clears earlier records and starts recording.
  static void start();
  // Waits for the recorded device work, stops recording and returns per-kernel totals, largest device time first.
  static std::vector<KernelStat> stop();
  // A table of `stats` with each kernel's share of `wall_ms` (the measured span), plus the part of the span
  // that no kernel covered.
  static std::string format(const std::vector<KernelStat>& stats, double wall_ms);

  class Scope {
   public:
    Scope(const char* name, Device device);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    const char* name_;
    Device device_;
    bool outer_;
    std::chrono::steady_clock::time_point t0_;
    std::unique_ptr<Event> begin_;
  };

 private:
  static std::atomic<bool> active_;
};

}  // namespace kolo
