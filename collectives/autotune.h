// Autotuner (KOLO_AUTOTUNE=1): an online grid search over (fusion threshold, cycle time) run by the
// coordinator. Each candidate is scored over a window of busy cycles as bytes reduced per microsecond of
// wall time; every sample is logged (KOLO_AUTOTUNE_LOG as CSV, and at debug level); after the grid is
// exhausted the best candidate is kept. The agreed values travel to all ranks in every ResponseList, so
// fusion decisions stay identical everywhere.
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace kolo {

class Autotuner {
 public:
  using Clock = std::chrono::steady_clock;
  Autotuner(int window_cycles, const std::string& log_path);
  // Called once per coordinator cycle with the bytes that cycle made ready; may change the two knobs.
  void observe(int64_t bytes, Clock::time_point now, int64_t* fusion_threshold, double* cycle_time_ms);
  bool done() const { return done_; }

 private:
  struct Candidate {
    int64_t fusion_threshold;
    double cycle_time_ms;
    double score = -1;
  };
  std::vector<Candidate> grid_;
  size_t current_ = 0;
  int window_;
  int busy_cycles_ = 0;
  int64_t bytes_ = 0;
  Clock::time_point window_start_;
  bool done_ = false;
  std::ofstream log_;
};

}  // namespace kolo
