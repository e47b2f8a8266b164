// StepTimeline: with KOLO_TIMELINE set, the training step's phases as the device ran them (forward, backward,
// then the wait for the gradient exchange plus the update) on a "step" row of the Chrome-trace timeline, beside
// the collectives' rows, so one picture shows how communication overlaps the backward pass.
//
// On a GPU, host times only say when kernels were launched. Each phase boundary is therefore a timing event
// on the compute stream; end_step() waits on the host for the step's last event and places the events on the
// host clock backwards from that wait (the last event completed just before it returned). So a timeline run
// syncs once a step, which the training loops otherwise no longer do.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "collectives/runtime.h"
#include "core/device/device.h"
#include "core/device/stream.h"

namespace kolo::examples {

class StepTimeline {
 public:
  StepTimeline(Runtime& rt, Device device);
  bool enabled() const { return enabled_; }
  void mark(const char* phase);  // `phase` starts now on the device's current stream
  void end_step();               // waits for the step's device work, writes its phases, starts a new step

 private:
  struct Mark {
    std::string phase;
    std::unique_ptr<Event> event;  // device runs
    std::chrono::steady_clock::time_point host;  // CPU runs: the phases ran synchronously
  };
  Runtime& rt_;
  Device device_;
  bool enabled_ = false;
  std::vector<Mark> marks_;
  size_t used_ = 0;  // marks of the current step (events are reused across steps)
};

}  // namespace kolo::examples
