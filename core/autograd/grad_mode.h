// Thread-local switch that turns graph recording off (inference, optimizer updates).
#pragma once

namespace kolo {

class GradMode {
 public:
  static bool enabled();
  static void set_enabled(bool on);
};

// RAII: `NoGradGuard g;` disables recording until the end of the scope.
class NoGradGuard {
 public:
  NoGradGuard() : prev_(GradMode::enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

}  // namespace kolo
