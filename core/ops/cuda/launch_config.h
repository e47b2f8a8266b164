// Launch geometry shared by the CUDA kernels: grids sized from the device's multiprocessor count.
#pragma once

#include <cstdint>

namespace kolo::cuda {

// Blocks for `work` items at `threads` per block: enough to fill the current device a few times over
// (kernels cover the rest with grid-stride loops), never more than the work needs, at least one.
int grid_for(int64_t work, int threads);

// Multiprocessors of the current device (cached per device).
int sm_count();

}  // namespace kolo::cuda
