// Grid search with one scored window per candidate; the best by bytes/us wins.
#include "collectives/autotune.h"

#include "core/util/logging.h"

namespace kolo {

Autotuner::Autotuner(int window_cycles, const std::string& log_path) : window_(window_cycles) {
  for (int64_t mib : {1, 4, 16, 64, 128})
    for (double ms : {0.5, 1.0, 2.5, 5.0}) grid_.push_back({mib << 20, ms});
  if (!log_path.empty()) {
    log_.open(log_path, std::ios::out | std::ios::trunc);
    if (log_.is_open()) log_ << "fusion_threshold_bytes,cycle_time_ms,bytes,micros,score_bytes_per_us\n";
  }
}

void Autotuner::observe(int64_t bytes, Clock::time_point now, int64_t* fusion_threshold, double* cycle_time_ms) {
  if (done_) return;
  if (busy_cycles_ == 0 && bytes == 0) return;  // windows start at the first busy cycle
  if (busy_cycles_ == 0) {
    window_start_ = now;
    *fusion_threshold = grid_[current_].fusion_threshold;
    *cycle_time_ms = grid_[current_].cycle_time_ms;
  }
  bytes_ += bytes;
  if (bytes > 0) ++busy_cycles_;
  if (busy_cycles_ <= window_) return;
  const double us = std::max(1.0, std::chrono::duration<double, std::micro>(now - window_start_).count());
  Candidate& c = grid_[current_];
  c.score = static_cast<double>(bytes_) / us;
  KOLO_LOG(Debug, "autotune sample: fusion_threshold=", c.fusion_threshold, " cycle_time_ms=", c.cycle_time_ms,
           " score=", c.score, " bytes/us");
  if (log_.is_open()) log_ << c.fusion_threshold << "," << c.cycle_time_ms << "," << bytes_ << "," << us << ","
                           << c.score << std::endl;
  busy_cycles_ = 0;
  bytes_ = 0;
  if (++current_ < grid_.size()) {
    *fusion_threshold = grid_[current_].fusion_threshold;
    *cycle_time_ms = grid_[current_].cycle_time_ms;
    return;
  }
  const Candidate* best = &grid_[0];
  for (const auto& g : grid_)
    if (g.score > best->score) best = &g;
  *fusion_threshold = best->fusion_threshold;
  *cycle_time_ms = best->cycle_time_ms;
  done_ = true;
  KOLO_LOG(Info, "autotune done: fusion_threshold=", best->fusion_threshold, " cycle_time_ms=", best->cycle_time_ms,
           " (", best->score, " bytes/us)");
  if (log_.is_open()) log_ << "# best," << best->fusion_threshold << "," << best->cycle_time_ms << std::endl;
}

}  // namespace kolo
