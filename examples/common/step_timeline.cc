#include "examples/common/step_timeline.h"

#include "core/device/device_backend.h"

namespace kolo::examples {

using Clock = std::chrono::steady_clock;

StepTimeline::StepTimeline(Runtime& rt, Device device)
    : rt_(rt), device_(device), enabled_(rt.timeline_enabled()) {}

void StepTimeline::mark(const char* phase) {
  if (!enabled_) return;
  if (used_ == marks_.size()) {
    marks_.push_back({});
    if (!device_.is_cpu()) marks_.back().event = device_backend(device_.type).create_event(device_.index, true);
  }
  Mark& m = marks_[used_++];
  m.phase = phase;
  if (m.event)
    m.event->record(device_backend(device_.type).current_stream(device_.index));
  else
    m.host = Clock::now();
}

void StepTimeline::end_step() {
  if (!enabled_ || used_ == 0) return;
  mark("");
  const size_t n = used_;
  used_ = 0;
  std::vector<Clock::time_point> at(n);
  if (marks_[n - 1].event) {
    Event& last = *marks_[n - 1].event;
    last.synchronize();
    const Clock::time_point end = Clock::now();
    for (size_t i = 0; i < n; ++i)
      at[i] = end - std::chrono::duration_cast<Clock::duration>(
                        std::chrono::duration<double, std::milli>(last.elapsed_ms(*marks_[i].event)));
  } else {
    for (size_t i = 0; i < n; ++i) at[i] = marks_[i].host;
  }
  for (size_t i = 0; i + 1 < n; ++i) rt_.timeline_span("step", marks_[i].phase, at[i], at[i + 1]);
}

}  // namespace kolo::examples
