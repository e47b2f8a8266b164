// StepTimeline: with KOLO_TIMELINE set, the training step's phases as the device ran them (forward, backward,
// then the wait for the gradient exchange plus the update) on a "step" row of the Chrome-trace timeline, beside
// the collectives' rows, so one picture shows how communication overlaps the backward pass.
//
// On a GPU, host times only say when kernels were launched. Each phase boundary is therefore a timing event
// on the compute stream; after the step's host sync the events are placed on the host clock backwards from
// that sync (the step's last event completed just before the sync returned).
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
  void end_step();               // after the step's host sync: writes the step's phases, starts a new step

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
