// ShardSampler: every item once per epoch across ranks, equal counts in kEven, seeded reproducible order.
#include "core/data/shard_sampler.h"

#include <algorithm>
#include <numeric>

#include <gtest/gtest.h>

#include "core/util/error.h"

namespace kolo::data {
namespace {

TEST(ShardSampler, ExactModeCoversEachItemOnceAcrossRanks) {
  for (int64_t n : {0, 1, 7, 10, 101}) {
    for (int size = 1; size <= 5; ++size) {
      for (bool shuffle : {false, true}) {
        std::vector<int> seen(n, 0);
        int64_t lo = n, hi = 0;
        for (int rank = 0; rank < size; ++rank) {
          ShardSampler s(n, {rank, size, /*seed=*/42, shuffle, ShardMode::kExact});
          const auto items = s.epoch_items(3);
          EXPECT_EQ(static_cast<int64_t>(items.size()), s.items_per_rank());
          lo = std::min<int64_t>(lo, items.size());
          hi = std::max<int64_t>(hi, items.size());
          for (int64_t i : items) ++seen[i];
        }
        for (int64_t i = 0; i < n; ++i) EXPECT_EQ(seen[i], 1) << "n=" << n << " size=" << size << " item " << i;
        EXPECT_LE(hi - lo, 1);
      }
    }
  }
}

TEST(ShardSampler, EvenModeGivesEqualCountsWithoutRepeats) {
  const int64_t n = 103;
  const int size = 4;
  std::vector<int> seen(n, 0);
  for (int rank = 0; rank < size; ++rank) {
    ShardSampler s(n, {rank, size, 7, true, ShardMode::kEven});
    const auto items = s.epoch_items(0);
    EXPECT_EQ(items.size(), 25u);
    for (int64_t i : items) ++seen[i];
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), 100);
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 0), 3);
}

TEST(ShardSampler, ShuffleIsDeterministicPerSeedAndEpoch) {
  ShardSampler a(1000, {1, 2, 5, true, ShardMode::kEven});
  ShardSampler b(1000, {1, 2, 5, true, ShardMode::kEven});
  ShardSampler c(1000, {1, 2, 6, true, ShardMode::kEven});
  EXPECT_EQ(a.epoch_items(0), b.epoch_items(0));
  EXPECT_NE(a.epoch_items(0), a.epoch_items(1));
  EXPECT_NE(a.epoch_items(0), c.epoch_items(0));
  auto p = seeded_permutation(1000, 5, 0);
  std::vector<int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> iota(1000);
  std::iota(iota.begin(), iota.end(), 0);
  EXPECT_EQ(sorted, iota);
  EXPECT_NE(p, iota);
}

TEST(ShardSampler, SplitIsDisjointAndReproducible) {
  auto [train, test] = split_indices(1797, 297, 123);
  EXPECT_EQ(train.size(), 1500u);
  EXPECT_EQ(test.size(), 297u);
  std::vector<int64_t> all = train;
  all.insert(all.end(), test.begin(), test.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end());
  EXPECT_EQ(split_indices(1797, 297, 123).second, test);
  EXPECT_NE(split_indices(1797, 297, 124).second, test);
}

TEST(ShardSampler, RejectsBadRank) {
  EXPECT_THROW(ShardSampler(10, {2, 2, 0, true, ShardMode::kEven}), Error);
}

}  // namespace
}  // namespace kolo::data
