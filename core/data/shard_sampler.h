// Which items a rank visits in an epoch: a seeded per-epoch permutation dealt out round-robin to ranks.
//
// Every rank computes the same permutation from (seed, epoch) alone, so no communication is needed and
// rank and size are plain ints (the collectives library is not a dependency). Rank r takes permutation
// positions r, r + size, r + 2·size, ... — so across ranks each item appears exactly once per epoch.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace kolo::data {

enum class ShardMode {
  // Every rank gets floor(n / size) items; the n % size leftover items (different ones each epoch, since
  // the permutation changes) are skipped. Equal step counts on all ranks: the mode for training.
  kEven,
  // Each item exactly once across ranks; rank counts differ by at most one. The mode for evaluation.
  kExact,
};

struct ShardOptions {
  int rank = 0;
  int size = 1;
  uint64_t seed = 0;
  bool shuffle = true;
  ShardMode mode = ShardMode::kEven;
};

// A loader's position, saved in checkpoints: `index` counts batches already returned in `epoch`.
struct LoaderState {
  int64_t epoch = 0;
  int64_t index = 0;
  bool operator==(const LoaderState&) const = default;
  // After a loader's next(): one batch further, or the start of the following epoch when it returned none.
  void advance(bool returned_batch) {
    if (returned_batch) {
      ++index;
    } else {
      *this = {epoch + 1, 0};
    }
  }
};

class ShardSampler {
 public:
  ShardSampler(int64_t num_items, ShardOptions options);

  int64_t num_items() const { return num_items_; }
  const ShardOptions& options() const { return options_; }
  // Number of items this rank visits per epoch (the same every epoch).
  int64_t items_per_rank() const;
  // This rank's items for `epoch`, in visiting order.
  std::vector<int64_t> epoch_items(int64_t epoch) const;

 private:
  int64_t num_items_;
  ShardOptions options_;
};

// Fisher–Yates permutation of [0, n) from (seed, epoch); identical on every platform and thread count.
std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed, int64_t epoch);

// Deterministic split of [0, n) into (train, held_out) with `held_out` items chosen by `seed`; both
// lists come back sorted so that the held-out set does not depend on any later shuffling.
std::pair<std::vector<int64_t>, std::vector<int64_t>> split_indices(int64_t n, int64_t held_out, uint64_t seed);

}  // namespace kolo::data
