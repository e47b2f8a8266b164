// Logging: one line per message, written with a single fwrite so ranks' lines do not interleave.
#include "core/util/logging.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace kolo {

LogLevel log_level() {
  static const LogLevel level = [] {
    const char* v = std::getenv("KOLO_LOG_LEVEL");
    if (!v) return LogLevel::Warning;
    if (!std::strcmp(v, "trace")) return LogLevel::Trace;
    if (!std::strcmp(v, "debug")) return LogLevel::Debug;
    if (!std::strcmp(v, "info")) return LogLevel::Info;
    if (!std::strcmp(v, "error")) return LogLevel::Error;
    return LogLevel::Warning;
  }();
  return level;
}

void log_message(LogLevel level, const std::string& msg) {
  static const char* names[] = {"TRACE", "DEBUG", "INFO", "WARNING", "ERROR"};
  std::string line = "[kolo";
  const int rank = detail::log_rank();
  if (rank >= 0) line += " rank " + std::to_string(rank);
  line += ' ';
  line += names[static_cast<int>(level)];
  line += "] ";
  line += msg;
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace kolo
