// Rank-prefixed logging to stderr, filtered by KOLO_LOG_LEVEL (trace, debug, info, warning, error).
#pragma once

#include <string>

#include "core/util/error.h"

namespace kolo {

enum class LogLevel { Trace = 0, Debug = 1, Info = 2, Warning = 3, Error = 4 };

LogLevel log_level();
void log_message(LogLevel level, const std::string& msg);

}  // namespace kolo

#define KOLO_LOG(level, ...)                                                           \
  do {                                                                                 \
    if (::kolo::LogLevel::level >= ::kolo::log_level())                                \
      ::kolo::log_message(::kolo::LogLevel::level, ::kolo::detail::concat(__VA_ARGS__)); \
  } while (0)
