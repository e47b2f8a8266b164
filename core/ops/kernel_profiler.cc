// Recording and aggregation for KernelProfiler.
#include "core/ops/kernel_profiler.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>
#include <utility>

#include "core/device/device_backend.h"
#include "core/device/stream.h"

namespace kolo {
namespace {

struct Record {
  const char* name;
  Device device;
  double host_ms;
  std::unique_ptr<Event> begin, end;  // device timing events (none on the CPU)
};

struct ProfilerState {
  std::mutex mu;
  std::vector<Record> records;
};

ProfilerState& state() {
  static ProfilerState s;
  return s;
}

thread_local int tls_depth = 0;

std::unique_ptr<Event> timing_event(Device device) {
  return device_backend(device.type).create_event(device.index, true);
}

}  // namespace

std::atomic<bool> KernelProfiler::active_{false};

void KernelProfiler::start() {
  ProfilerState& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.records.clear();
  active_.store(true, std::memory_order_relaxed);
}

std::vector<KernelStat> KernelProfiler::stop() {
  active_.store(false, std::memory_order_relaxed);
  ProfilerState& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  std::set<std::pair<int, int>> devices;
  for (const Record& r : s.records)
    if (!r.device.is_cpu()) devices.insert({static_cast<int>(r.device.type), r.device.index});
  for (auto [type, index] : devices) device_backend(static_cast<DeviceType>(type)).synchronize(index);
  std::map<std::pair<std::string, std::string>, KernelStat> by_name;
  for (const Record& r : s.records) {
    KernelStat& k = by_name[{r.name, r.device.str()}];
    k.name = r.name;
    k.device = r.device;
    ++k.calls;
    k.host_ms += r.host_ms;
    k.device_ms += r.begin ? r.end->elapsed_ms(*r.begin) : r.host_ms;
  }
  s.records.clear();
  std::vector<KernelStat> out;
  for (auto& [key, k] : by_name) out.push_back(k);
  std::sort(out.begin(), out.end(), [](const KernelStat& a, const KernelStat& b) { return a.device_ms > b.device_ms; });
  return out;
}

std::string KernelProfiler::format(const std::vector<KernelStat>& stats, double wall_ms) {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%-28s %-7s %8s %11s %7s %11s\n", "kernel", "device", "calls", "device ms",
                "share", "host ms");
  out += line;
  double device_total = 0, host_total = 0;
  for (const KernelStat& k : stats) {
    device_total += k.device_ms;
    host_total += k.host_ms;
    std::snprintf(line, sizeof line, "%-28s %-7s %8lld %11.2f %6.1f%% %11.2f\n", k.name.c_str(),
                  k.device.str().c_str(), static_cast<long long>(k.calls), k.device_ms,
                  wall_ms > 0 ? 100.0 * k.device_ms / wall_ms : 0.0, k.host_ms);
    out += line;
  }
  std::snprintf(line, sizeof line, "%-28s %-7s %8s %11.2f %6.1f%% %11.2f\n", "(all kernels)", "", "", device_total,
                wall_ms > 0 ? 100.0 * device_total / wall_ms : 0.0, host_total);
  out += line;
  std::snprintf(line, sizeof line, "%-28s %-7s %8s %11.2f %6.1f%%\n", "(outside kernels)", "", "",
                std::max(0.0, wall_ms - device_total),
                wall_ms > 0 ? 100.0 * std::max(0.0, wall_ms - device_total) / wall_ms : 0.0);
  out += line;
  return out;
}

KernelProfiler::Scope::Scope(const char* name, Device device)
    : name_(name), device_(device), outer_(tls_depth++ == 0), t0_(std::chrono::steady_clock::now()) {
  if (!outer_ || device_.is_cpu()) return;
  begin_ = timing_event(device_);
  begin_->record(device_backend(device_.type).current_stream(device_.index));
}

KernelProfiler::Scope::~Scope() {
  --tls_depth;
  if (!outer_ || !active()) return;
  Record r{name_, device_, 0, std::move(begin_), nullptr};
  if (r.begin) {
    r.end = timing_event(device_);
    r.end->record(device_backend(device_.type).current_stream(device_.index));
  }
  r.host_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_).count();
  ProfilerState& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.records.push_back(std::move(r));
}

}  // namespace kolo
