// Typed reads of KOLO_* environment knobs; a malformed value is an Error naming the variable, never a crash.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace kolo::env {

std::optional<std::string> get(const char* name);
int64_t get_int(const char* name, int64_t fallback);
double get_double(const char* name, double fallback);
bool get_bool(const char* name, bool fallback);

// Parsers behind the getters, exposed for tests and fuzzing. `what` names the source in errors.
int64_t parse_int(const std::string& text, const std::string& what);
double parse_double(const std::string& text, const std::string& what);
bool parse_bool(const std::string& text, const std::string& what);

}  // namespace kolo::env
