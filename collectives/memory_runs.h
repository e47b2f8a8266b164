// Runs of adjacent tensors in a fused allreduce. The optimizers keep every gradient in one flat buffer (optim
// FlatBuffer), so a fused group of gradient slots covers a few contiguous regions; a backend can reduce each
// region where it lies, with no copy into and out of a fusion buffer, whatever order the slots became ready in.
//
// Every rank must cut the same runs, or their reductions pair different bytes. Adjacency is therefore taken
// from views of one storage (the program's structure), never from addresses that merely touch (an
// allocator's placement differs between ranks), and runs are ordered by the agreed order of their tensors,
// not by address. `run_signature` lets the ranks check that they agree before relying on it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kolo {

// One tensor of a group, reduced in place: `count` elements at `data`, which is element `offset` of the
// allocation `storage` (nullptr: adjacent to nothing).
struct InPlaceSpan {
  void* data;
  int64_t count;
  const void* storage;
  int64_t offset;
};

// A region of adjacent spans: `count` elements from `data`, covering the spans listed in `members` (indices
// into the input, in memory order).
struct MemoryRun {
  void* data;
  int64_t count;
  std::vector<size_t> members;
};

// The runs, ordered by their first member in the input's order. Empty spans belong to no run. Returns no
// runs when two spans of one storage overlap (the same memory under two names must go through the fusion
// buffer, which reduces each copy separately).
std::vector<MemoryRun> adjacent_runs(const std::vector<InPlaceSpan>& spans);

// A hash of the runs' membership (which tensors, in what order): equal on every rank that cut the same runs.
uint64_t run_signature(const std::vector<MemoryRun>& runs);

}  // namespace kolo
