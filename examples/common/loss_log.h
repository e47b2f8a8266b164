// The training loops' per-step losses, read on the host one step late. Reading a step's loss right after
// launching it stalls the host until the device has finished that step, and the device then idles while
// the host launches the next one (0.4-0.7 ms a step on a GPU, visible on the step timeline). Step k's loss is
// read once step k+1 is launched, while the device still works on k+1; a display line reads the pending one.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor/tensor.h"

namespace kolo::examples {

class LossLog {
 public:
  // This step's loss (a scalar, on any device); reads the one held before it.
  void add(const Tensor& loss);
  // Reads the held loss now; then the mean of the losses since the previous call (NaN when none).
  double interval_mean();
  // Every loss so far, in step order (reads the held one).
  const std::vector<double>& all();

 private:
  void read_held();
  Tensor held_;
  std::vector<double> values_;
  size_t interval_begin_ = 0;
};

}  // namespace kolo::examples
