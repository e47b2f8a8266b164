// ThroughputMeter: timing of training steps and tf_cnn_benchmarks-style lines.
#include "examples/common/throughput.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ostream>

#include "core/device/device_backend.h"
#include "core/util/error.h"

namespace kolo::examples {

ThroughputMeter::ThroughputMeter(std::string unit, int ranks, int64_t warmup_steps, Device device)
    : unit_(std::move(unit)), ranks_(ranks), warmup_steps_(warmup_steps), device_(device) {}

namespace {

// "45s", "3m05s", "2h07m".
std::string short_duration(double seconds) {
  const auto s = static_cast<long long>(std::llround(std::max(0.0, seconds)));
  char out[32];
  if (s < 60) std::snprintf(out, sizeof out, "%llds", s);
  else if (s < 3600) std::snprintf(out, sizeof out, "%lldm%02llds", s / 60, s % 60);
  else std::snprintf(out, sizeof out, "%lldh%02lldm", s / 3600, s % 3600 / 60);
  return out;
}

}  // namespace

std::unique_ptr<Event> ThroughputMeter::recorded_event() {
  std::unique_ptr<Event> e;
  if (spare_events_.empty()) {
    e = device_backend(device_.type).create_event(device_.index, /*timing=*/true);
  } else {
    e = std::move(spare_events_.back());
    spare_events_.pop_back();
  }
  e->record(device_backend(device_.type).current_stream(device_.index));
  return e;
}

void ThroughputMeter::start_step() {
  step_begin_ = std::chrono::steady_clock::now();
  if (!interval_open_) {
    interval_begin_ = step_begin_;
    interval_open_ = true;
  }
  if (!device_.is_cpu()) {
    if (started_) spare_events_.push_back(std::move(started_));
    started_ = recorded_event();
  }
}

void ThroughputMeter::end_step(int64_t local_items) {
  if (device_.is_cpu()) {
    account(std::chrono::duration<double>(std::chrono::steady_clock::now() - step_begin_).count(), local_items);
    return;
  }
  KOLO_CHECK(started_ != nullptr, "ThroughputMeter: end_step() without start_step()");
  pending_.push_back({local_items, std::move(started_), recorded_event()});
  settle(/*wait=*/false);
}

void ThroughputMeter::settle(bool wait) {
  if (wait && !pending_.empty()) pending_.back().end->synchronize();  // one stream: the earlier ones too
  while (!pending_.empty() && (wait || pending_.front().end->query())) {
    Pending step = std::move(pending_.front());
    pending_.pop_front();
    const double seconds = step.end->elapsed_ms(*step.start) / 1e3;
    spare_events_.push_back(std::move(step.start));
    spare_events_.push_back(std::move(step.end));
    account(seconds, step.items);
  }
}

void ThroughputMeter::account(double s, int64_t local_items) {
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

void ThroughputMeter::drain(const std::function<void()>& drain) {
  const auto t0 = std::chrono::steady_clock::now();
  drain();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!device_.is_cpu()) {
    settle(/*wait=*/true);
    return;
  }
  if (steps_ == 0) return;
  all_seconds_ += s;
  if (steps_ > warmup_steps_) measured_seconds_ += s;
}

void ThroughputMeter::print_header(std::ostream& os) const {
  os << "Step\t" << unit_ << "/sec\ttotal_loss\tETA\n";
}

void ThroughputMeter::print_interval(std::ostream& os, int64_t step, double loss, int64_t total_steps) {
  settle(/*wait=*/true);
  const auto now = std::chrono::steady_clock::now();
  const double per_step = interval_rates_.empty() ? 0.0
                                                  : std::chrono::duration<double>(now - interval_begin_).count() /
                                                        static_cast<double>(interval_rates_.size());
  interval_open_ = false;
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
  char line[200];
  std::snprintf(line, sizeof line, "%lld\t%s/sec: %.1f +/- %.1f (jitter = %.1f)\t%.3f\tETA %s\n",
                static_cast<long long>(step), unit_.c_str(), mean, std::sqrt(var), hi - lo, loss,
                short_duration(per_step * static_cast<double>(std::max<int64_t>(0, total_steps - step))).c_str());
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
