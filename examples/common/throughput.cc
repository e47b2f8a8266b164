// ThroughputMeter: timing of training steps and tf_cnn_benchmarks-style lines.
#include "examples/common/throughput.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ostream>

namespace kolo::examples {

ThroughputMeter::ThroughputMeter(std::string unit, int ranks, int64_t warmup_steps)
    : unit_(std::move(unit)), ranks_(ranks), warmup_steps_(warmup_steps) {}

void ThroughputMeter::start_step() { step_begin_ = std::chrono::steady_clock::now(); }

void ThroughputMeter::end_step(int64_t local_items) {
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - step_begin_).count();
  const int64_t items = local_items * ranks_;
  ++steps_;
  all_seconds_ += s;
  all_items_ += items;
  if (steps_ > warmup_steps_) {
    measured_seconds_ += s;
    measured_items_ += items;
  }
  interval_rates_.push_back(s > 0 ? items / s : 0.0);
}

void ThroughputMeter::print_header(std::ostream& os) const { os << "Step\t" << unit_ << "/sec\ttotal_loss\n"; }

void ThroughputMeter::print_interval(std::ostream& os, int64_t step, double loss) {
  double mean = 0, lo = 0, hi = 0, var = 0;
  if (!interval_rates_.empty()) {
    for (double r : interval_rates_) mean += r;
    mean /= interval_rates_.size();
    for (double r : interval_rates_) var += (r - mean) * (r - mean);
    var /= interval_rates_.size();
    auto [mn, mx] = std::minmax_element(interval_rates_.begin(), interval_rates_.end());
    lo = *mn;
    hi = *mx;
  }
  char line[160];
  std::snprintf(line, sizeof line, "%lld\t%s/sec: %.1f +/- %.1f (jitter = %.1f)\t%.3f\n",
                static_cast<long long>(step), unit_.c_str(), mean, std::sqrt(var), hi - lo, loss);
  os << line << std::flush;
  interval_rates_.clear();
}

double ThroughputMeter::total_rate() const {
  if (measured_seconds_ > 0) return measured_items_ / measured_seconds_;
  return all_seconds_ > 0 ? all_items_ / all_seconds_ : 0.0;
}

double ThroughputMeter::total_rate(int64_t global_items) const {
  const double s = measured_seconds_ > 0 ? measured_seconds_ : all_seconds_;
  return s > 0 ? global_items / s : 0.0;
}

int64_t ThroughputMeter::measured_local_items() const {
  return (measured_seconds_ > 0 ? measured_items_ : all_items_) / ranks_;
}

void ThroughputMeter::print_total(std::ostream& os, double rate) const {
  char line[160];
  std::snprintf(line, sizeof line, "total %s/sec: %.2f\n", unit_.c_str(), rate);
  os << "----------------------------------------------------------------\n" << line
     << "----------------------------------------------------------------\n" << std::flush;
}

}  // namespace kolo::examples
