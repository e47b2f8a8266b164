// Timeline: a Chrome-trace JSON file (chrome://tracing, Perfetto) with one row per tensor and spans for
// each phase of its life: NEGOTIATE (enqueue until every rank has it), QUEUE (agreed until executed),
// WAIT_FOR_DATA, MEMCPY_IN_FUSION_BUFFER, the collective (ALLREDUCE, ...; args say how many tensors were
// fused and how many chunks ran), MEMCPY_OUT_FUSION_BUFFER. Written by the background thread only; users
// add their own spans (e.g. the training step's phases) through Runtime::timeline_span.
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <mutex>
#include <string>

namespace kolo {

class Timeline {
 public:
  using Clock = std::chrono::steady_clock;
  Timeline() = default;
  ~Timeline() { close(); }
  void open(const std::string& path);  // throws kolo::Error when the file cannot be created
  bool enabled() const { return out_.is_open(); }
  // A complete span [begin, end) on `row` (a tensor name). `args` is a JSON object body or empty.
  void span(const std::string& row, const std::string& activity, Clock::time_point begin, Clock::time_point end,
            const std::string& args = "");
  void instant(const std::string& row, const std::string& what);
  void flush();
  void close();  // terminates the JSON array; idempotent

 private:
  int64_t micros(Clock::time_point t) const;
  int row_id(const std::string& row);
  std::mutex mu_;  // span() may also come from user threads through timeline_mark
  std::ofstream out_;
  Clock::time_point start_;
  std::map<std::string, int> rows_;
  bool first_ = true;
};

std::string json_escape(const std::string& s);

}  // namespace kolo
