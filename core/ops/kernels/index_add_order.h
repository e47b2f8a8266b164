// The summation order of index_add_rows on every device (core/ops/kernels/basic.h), in a header of its own so
// that the CUDA kernels can include it without the tensor headers.
//
// The positions are sorted stably by row and cut into blocks of kIndexAddBlock sorted positions; each destination
// element is
//   old value + (its row's values in the row's first block, in order) + partial(next block) + partial(...) ...
// summed in double (integers: int64) and rounded once, where a partial is the sum from zero, in order, of the
// row's values within that block. Blocks let a GPU sum a row looked up thousands of times in parallel.
#pragma once

#include <cstdint>

namespace kolo {

constexpr int64_t kIndexAddBlock = 128;

}  // namespace kolo
