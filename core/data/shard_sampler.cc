// Seeded permutations and their round-robin split across ranks.
#include "core/data/shard_sampler.h"

#include <algorithm>
#include <numeric>

#include "core/tensor/tensor.h"
#include "core/util/error.h"

namespace kolo::data {

ShardSampler::ShardSampler(int64_t num_items, ShardOptions options) : num_items_(num_items), options_(options) {
  KOLO_CHECK(options.size >= 1 && options.rank >= 0 && options.rank < options.size, "ShardSampler: rank ",
             options.rank, " out of range for size ", options.size);
  KOLO_CHECK(num_items >= 0, "ShardSampler: negative item count ", num_items);
}

int64_t ShardSampler::items_per_rank() const {
  const int64_t size = options_.size;
  if (options_.mode == ShardMode::kEven) return num_items_ / size;
  return num_items_ / size + (options_.rank < num_items_ % size ? 1 : 0);
}

std::vector<int64_t> ShardSampler::epoch_items(int64_t epoch) const {
  std::vector<int64_t> order;
  if (options_.shuffle) {
    order = seeded_permutation(num_items_, options_.seed, epoch);
  } else {
    order.resize(num_items_);
    std::iota(order.begin(), order.end(), 0);
  }
  const int64_t count = items_per_rank();
  std::vector<int64_t> mine;
  mine.reserve(count);
  for (int64_t k = 0; k < count; ++k) mine.push_back(order[options_.rank + k * options_.size]);
  return mine;
}

std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> p(n);
  std::iota(p.begin(), p.end(), 0);
  const uint64_t key = Generator::hash(seed, static_cast<uint64_t>(epoch));
  for (int64_t i = n - 1; i > 0; --i) {
    // Modulo bias is below 2^-40 for any realistic n, and the result is fully determined by the seed.
    const auto j = static_cast<int64_t>(Generator::hash(key, static_cast<uint64_t>(i)) % static_cast<uint64_t>(i + 1));
    std::swap(p[i], p[j]);
  }
  return p;
}

std::pair<std::vector<int64_t>, std::vector<int64_t>> split_indices(int64_t n, int64_t held_out, uint64_t seed) {
  KOLO_CHECK(held_out >= 0 && held_out <= n, "split_indices: cannot hold out ", held_out, " of ", n, " items");
  const auto p = seeded_permutation(n, seed, /*epoch=*/-1);
  std::vector<int64_t> test(p.begin(), p.begin() + held_out), train(p.begin() + held_out, p.end());
  std::sort(test.begin(), test.end());
  std::sort(train.begin(), train.end());
  return {std::move(train), std::move(test)};
}

}  // namespace kolo::data
