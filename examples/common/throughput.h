// tf_cnn_benchmarks-style progress lines: per display interval "step  <unit>/sec: X +/- Y (jitter = Z)  loss
// ETA", and at the end "total <unit>/sec: N" over the steps after warm-up. The ETA extrapolates the wall time
// per step since the previous line (data loading and evaluation included) over the steps left.
//
// Rates are global (all ranks): every rank processes the same number of items per step, so the global
// rate is local items x ranks / step time. As tf_cnn_benchmarks, the first `warmup_steps` steps (graph
// set-up, allocator growth, first-touch page faults) are left out of the totals.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

namespace kolo::examples {

class ThroughputMeter {
 public:
  ThroughputMeter(std::string unit, int ranks, int64_t warmup_steps);

  void start_step();
  // Ends a step that processed `local_items` on this rank.
  void end_step(int64_t local_items);
  // Calls `drain` (a device synchronisation) and adds the time it took to the last step: the host runs ahead
  // of the device, so when the last step ends on the host its work may still be queued on the device.
  void drain(const std::function<void()>& drain);
  // The header line, then one line per call: the rate statistics of the steps since the previous call.
  void print_header(std::ostream& os) const;
  // `total_steps`: the run's last step, for the ETA.
  void print_interval(std::ostream& os, int64_t step, double loss, int64_t total_steps);
  void print_total(std::ostream& os) const { print_total(os, total_rate()); }
  void print_total(std::ostream& os, double rate) const;

  double total_rate() const;  // items/sec over steps after warm-up (all steps when there are no others)
  // The same from a caller's exact global item count over the measured steps (token batches differ in
  // size between ranks, so local x ranks is only an estimate there).
  double total_rate(int64_t global_items) const;
  int64_t measured_local_items() const;  // this rank's items in the steps total_rate() measures
  int64_t steps() const { return steps_; }

 private:
  std::string unit_;
  int ranks_;
  int64_t warmup_steps_;
  std::chrono::steady_clock::time_point step_begin_;
  std::chrono::steady_clock::time_point interval_begin_;  // start of the first step after the previous line
  bool interval_open_ = false;
  int64_t steps_ = 0;
  std::vector<double> interval_rates_;
  double measured_seconds_ = 0, all_seconds_ = 0;
  int64_t measured_items_ = 0, all_items_ = 0;
};

}  // namespace kolo::examples
