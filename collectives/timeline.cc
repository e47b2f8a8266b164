// Chrome trace event format: an array of {"ph":"X"} complete events; row names arrive as "M" metadata.
#include "collectives/timeline.h"

#include <algorithm>
#include <cstdio>

#include "core/util/error.h"

namespace kolo {

std::string json_escape(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      o += buf;
    } else {
      o += c;
    }
  }
  return o;
}

void Timeline::open(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  out_.open(path, std::ios::out | std::ios::trunc);
  KOLO_CHECK(out_.is_open(), "timeline: cannot open KOLO_TIMELINE file '", path, "'");
  start_ = Clock::now();
  out_ << "[\n";
  first_ = true;
}

int64_t Timeline::micros(Clock::time_point t) const {
  return std::chrono::duration_cast<std::chrono::microseconds>(t - start_).count();
}

int Timeline::row_id(const std::string& row) {
  auto it = rows_.find(row);
  if (it != rows_.end()) return it->second;
  const int id = static_cast<int>(rows_.size()) + 1;
  rows_[row] = id;
  out_ << (first_ ? "" : ",\n") << R"({"name":"process_name","ph":"M","pid":)" << id
       << R"(,"args":{"name":")" << json_escape(row) << "\"}}";
  first_ = false;
  return id;
}

void Timeline::span(const std::string& row, const std::string& activity, Clock::time_point begin,
                    Clock::time_point end, const std::string& args) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!out_.is_open()) return;
  const int id = row_id(row);
  out_ << ",\n{\"name\":\"" << json_escape(activity) << "\",\"ph\":\"X\",\"pid\":" << id << ",\"tid\":1,\"ts\":"
       << micros(begin) << ",\"dur\":" << std::max<int64_t>(0, micros(end) - micros(begin));
  if (!args.empty()) out_ << ",\"args\":{" << args << "}";
  out_ << "}";
}

void Timeline::instant(const std::string& row, const std::string& what) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!out_.is_open()) return;
  const int id = row_id(row);
  out_ << ",\n{\"name\":\"" << json_escape(what) << "\",\"ph\":\"i\",\"s\":\"p\",\"pid\":" << id
       << ",\"tid\":1,\"ts\":" << micros(Clock::now()) << "}";
}

void Timeline::flush() {
  std::lock_guard<std::mutex> lock(mu_);
  if (out_.is_open()) out_.flush();
}

void Timeline::close() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!out_.is_open()) return;
  out_ << "\n]\n";
  out_.close();
}

}  // namespace kolo
