// Error formatting: every message carries the rank (when known) and the throwing site.
#include "core/util/error.h"

#include <atomic>
#include <cstring>

namespace kolo::detail {

namespace {
std::atomic<int> g_log_rank{-1};
}

int log_rank() { return g_log_rank.load(std::memory_order_relaxed); }
void set_log_rank(int rank) { g_log_rank.store(rank, std::memory_order_relaxed); }

void throw_error(const char* file, int line, const std::string& msg) {
  const char* base = std::strrchr(file, '/');
  base = base ? base + 1 : file;
  std::string out;
  const int rank = log_rank();
  if (rank >= 0) out += "[rank " + std::to_string(rank) + "] ";
  out += msg;
  out += " (" + std::string(base) + ":" + std::to_string(line) + ")";
  throw Error(out);
}

}  // namespace kolo::detail
