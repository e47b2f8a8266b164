// kolo::Error, the one exception type of the library, and KOLO_CHECK which builds its message.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace kolo {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {

// Rank shown in every error and log line; -1 until a collectives runtime sets it.
int log_rank();
void set_log_rank(int rank);

template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

[[noreturn]] void throw_error(const char* file, int line, const std::string& msg);

}  // namespace detail
}  // namespace kolo

// KOLO_CHECK(cond, "op ", name, ": expected ", a, " got ", b) throws kolo::Error with file:line and rank.
#define KOLO_CHECK(cond, ...)                                                            \
  do {                                                                                   \
    if (!(cond)) ::kolo::detail::throw_error(__FILE__, __LINE__, ::kolo::detail::concat(__VA_ARGS__)); \
  } while (0)

#define KOLO_FAIL(...) ::kolo::detail::throw_error(__FILE__, __LINE__, ::kolo::detail::concat(__VA_ARGS__))
