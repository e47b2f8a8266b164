// tf_cnn_benchmarks-style progress lines: per display interval "step  <unit>/sec: X +/- Y (jitter = Z)  loss
// ETA", and at the end "total <unit>/sec: N" over the steps after warm-up. The ETA extrapolates the wall time
// per step since the previous line (data loading and evaluation included) over the steps left.
//
// Rates are global (all ranks): every rank processes the same number of items per step, so the global
// rate is local items x ranks / step time. As tf_cnn_benchmarks, the first `warmup_steps` steps (graph
// set-up, allocator growth, first-touch page faults) are left out of the totals.
//
// On a GPU the host only launches a step's work and runs ahead, so host times would measure launches (a CUDA
// graph replay "took" 1 ms of a 40 ms step). There a step lasts from a timing event recorded on the device's
// current stream at start_step() to one recorded at end_step(), as the device ran it: queued behind the previous
// step, the start event completes when that step's work does; host work between steps (a checkpoint, the data
// loader) with the device idle is left out, as on the CPU. Steps are accounted once their end event has
// completed, polled without blocking, and all of them at each progress line and at drain().
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "core/device/device.h"
#include "core/device/stream.h"

namespace kolo::examples {

class ThroughputMeter {
 public:
  // `device`: where the steps run; a GPU's steps are timed by events on its current stream.
  ThroughputMeter(std::string unit, int ranks, int64_t warmup_steps, Device device = Device::cpu());

  void start_step();
  // Ends a step that processed `local_items` on this rank.
  void end_step(int64_t local_items);
  // Calls `drain` (a device synchronisation) and accounts every step: on the CPU the time `drain` took is
  // added to the last step (work another thread still ran); on a GPU the steps' events already time it.
  void drain(const std::function<void()>& drain);
  // The header line, then one line per call: the rate statistics of the steps since the previous call.
  void print_header(std::ostream& os) const;
  // `total_steps`: the run's last step, for the ETA.
  void print_interval(std::ostream& os, int64_t step, double loss, int64_t total_steps);
  void print_total(std::ostream& os) const { print_total(os, total_rate()); }
  void print_total(std::ostream& os, double rate) const;

  // items/sec over the accounted steps after warm-up (all steps when there are no others); after drain(),
  // every step.
  double total_rate() const;
  // The same from a caller's exact global item count over the measured steps (token batches differ in
  // size between ranks, so local x ranks is only an estimate there).
  double total_rate(int64_t global_items) const;
  int64_t measured_local_items() const;  // this rank's items in the steps total_rate() measures
  int64_t steps() const { return steps_; }

 private:
  struct Pending {
    int64_t items;
    std::unique_ptr<Event> start, end;
  };
  void account(double seconds, int64_t local_items);
  // Accounts the pending GPU steps whose end event has completed; with `wait`, all of them.
  void settle(bool wait);
  std::unique_ptr<Event> recorded_event();

  std::string unit_;
  int ranks_;
  int64_t warmup_steps_;
  Device device_;
  std::unique_ptr<Event> started_;     // GPU: the start event of the step in progress
  std::deque<Pending> pending_;        // GPU: steps ended on the host, in order, not accounted yet
  std::vector<std::unique_ptr<Event>> spare_events_;
  std::chrono::steady_clock::time_point step_begin_;
  std::chrono::steady_clock::time_point interval_begin_;  // start of the first step after the previous line
  bool interval_open_ = false;
  int64_t steps_ = 0;
  std::vector<double> interval_rates_;
  double measured_seconds_ = 0, all_seconds_ = 0;
  int64_t measured_items_ = 0, all_items_ = 0;
};

}  // namespace kolo::examples
