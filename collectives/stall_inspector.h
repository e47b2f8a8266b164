// StallInspector: on the coordinator, reports tensors that some ranks submitted and others have not, after
// KOLO_STALL_CHECK_TIME (once per tensor per period), and asks for a job abort after
// KOLO_STALL_SHUTDOWN_TIME. The usual cause is a rank taking a different code path (a tensor computed
// only under a condition), which would otherwise be a silent hang.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace kolo {

class StallInspector {
 public:
  using Clock = std::chrono::steady_clock;
  StallInspector(double check_s, double shutdown_s) : check_s_(check_s), shutdown_s_(shutdown_s) {}
  struct Pending {
    std::string name;
    Clock::time_point first_seen;
    std::vector<int> submitted;
    std::vector<int> missing;
  };
  // Returns the report to print (empty when nothing is due); sets `abort` when the shutdown time passed.
  std::string check(const std::vector<Pending>& pending, Clock::time_point now, std::string* abort);
  void forget(const std::string& name) { warned_.erase(name); }
  const std::string& last_report() const { return last_report_; }

 private:
  double check_s_;
  double shutdown_s_;
  std::map<std::string, Clock::time_point> warned_;
  std::string last_report_;
};

}  // namespace kolo
