// Formats "ranks that submitted / ranks missing" lines for stalled tensors.
#include "collectives/stall_inspector.h"

#include <sstream>

namespace kolo {
namespace {

std::string rank_list(const std::vector<int>& ranks) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < ranks.size(); ++i) os << (i ? ", " : "") << ranks[i];
  os << "]";
  return os.str();
}

}  // namespace

std::string StallInspector::check(const std::vector<Pending>& pending, Clock::time_point now, std::string* abort) {
  if (pending.empty()) return {};  // the usual cycle: no stream to build
  std::ostringstream report;
  for (const auto& p : pending) {
    const double age = std::chrono::duration<double>(now - p.first_seen).count();
    if (age < check_s_) continue;
    if (shutdown_s_ > 0 && age >= shutdown_s_ && abort && abort->empty()) {
      *abort = "kolo: stall shutdown: tensor '" + p.name + "' submitted by ranks " + rank_list(p.submitted) +
               " but not by ranks " + rank_list(p.missing) + " for " + std::to_string(age) + " s";
    }
    auto it = warned_.find(p.name);
    if (it != warned_.end() && std::chrono::duration<double>(now - it->second).count() < check_s_) continue;
    warned_[p.name] = now;
    report << "  tensor '" << p.name << "' waiting " << static_cast<int64_t>(age * 1000) << " ms: submitted by ranks "
           << rank_list(p.submitted) << ", missing ranks " << rank_list(p.missing) << "\n";
  }
  std::string s = report.str();
  if (!s.empty()) {
    s = "kolo stall inspector: some ranks have not submitted these tensors (a rank on a different code path?)\n" + s;
    last_report_ = s;
  }
  return s;
}

}  // namespace kolo
