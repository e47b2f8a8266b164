// Strict parsing: the whole string must be consumed, ranges are checked.
#include "core/util/env.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "core/util/error.h"

namespace kolo::env {

std::optional<std::string> get(const char* name) {
  const char* v = std::getenv(name);
  if (!v) return std::nullopt;
  return std::string(v);
}

int64_t parse_int(const std::string& text, const std::string& what) {
  KOLO_CHECK(!text.empty(), what, ": empty value, expected an integer");
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  KOLO_CHECK(errno == 0 && end && *end == '\0', what, ": '", text, "' is not an integer");
  return v;
}

double parse_double(const std::string& text, const std::string& what) {
  KOLO_CHECK(!text.empty(), what, ": empty value, expected a number");
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  KOLO_CHECK(errno == 0 && end && *end == '\0' && std::isfinite(v), what, ": '", text,
             "' is not a finite number");
  return v;
}

bool parse_bool(const std::string& text, const std::string& what) {
  if (text == "1" || text == "true" || text == "yes" || text == "on") return true;
  if (text == "0" || text == "false" || text == "no" || text == "off") return false;
  KOLO_FAIL(what, ": '", text, "' is not a boolean (use 0/1, true/false)");
}

int64_t get_int(const char* name, int64_t fallback) {
  auto v = get(name);
  return v ? parse_int(*v, name) : fallback;
}

double get_double(const char* name, double fallback) {
  auto v = get(name);
  return v ? parse_double(*v, name) : fallback;
}

bool get_bool(const char* name, bool fallback) {
  auto v = get(name);
  return v ? parse_bool(*v, name) : fallback;
}

}  // namespace kolo::env
