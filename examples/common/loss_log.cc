// LossLog: per-step losses read one step late.
#include "examples/common/loss_log.h"

#include <limits>

namespace kolo::examples {

void LossLog::read_held() {
  if (!held_.defined()) return;
  values_.push_back(held_.item());
  held_ = Tensor();
}

void LossLog::add(const Tensor& loss) {
  read_held();
  held_ = loss.detach();
}

double LossLog::interval_mean() {
  read_held();
  const size_t n = values_.size() - interval_begin_;
  double sum = 0;
  for (size_t i = interval_begin_; i < values_.size(); ++i) sum += values_[i];
  interval_begin_ = values_.size();
  return n ? sum / static_cast<double>(n) : std::numeric_limits<double>::quiet_NaN();
}

const std::vector<double>& LossLog::all() {
  read_held();
  return values_;
}

}  // namespace kolo::examples
