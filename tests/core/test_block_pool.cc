// BlockPool: rounding, best fit, splitting, coalescing, stream separation and release, against a fake system
// allocator that counts segments; then a randomised run checked against a model of the live blocks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <random>
#include <set>

#include "core/device/block_pool.h"
#include "core/util/error.h"

namespace kolo {
namespace {

constexpr size_t MiB = size_t{1} << 20;

// System memory for a pool: real allocations, counted, with an optional budget past which it refuses.
struct FakeSystem {
  std::map<void*, size_t> segments;
  size_t budget = ~size_t{0}, in_use = 0;
  int allocs = 0, frees = 0;
  BlockPool make() {
    return BlockPool(
        [this](size_t bytes) -> void* {
          if (in_use + bytes > budget) return nullptr;
          void* p = std::aligned_alloc(64, bytes);
          segments[p] = bytes;
          in_use += bytes;
          ++allocs;
          return p;
        },
        [this](void* p) {
          in_use -= segments.at(p);
          segments.erase(p);
          ++frees;
          std::free(p);
        });
  }
};

TEST(BlockPool, RoundsTo512BytesAndSizesSegmentsByRequest) {
  EXPECT_EQ(BlockPool::round_size(0), 512u);
  EXPECT_EQ(BlockPool::round_size(1), 512u);
  EXPECT_EQ(BlockPool::round_size(513), 1024u);
  EXPECT_EQ(BlockPool::round_size(411 * MiB + 1), 411 * MiB + 512);
  EXPECT_EQ(BlockPool::segment_size(4096), 2 * MiB);
  EXPECT_EQ(BlockPool::segment_size(3 * MiB), 20 * MiB);
  EXPECT_EQ(BlockPool::segment_size(11 * MiB + 512), 12 * MiB);
  FakeSystem sys;
  BlockPool pool = sys.make();
  void* a = pool.allocate(1000, nullptr);
  EXPECT_EQ(pool.block_size(a), 1024u);
  EXPECT_EQ(pool.allocated(), 1024u);
  EXPECT_EQ(pool.reserved(), 2 * MiB);
  pool.free(a);
  EXPECT_EQ(pool.allocated(), 0u);
}

// A pinned stream key (a CUDA graph's private pool) keeps its wholly free segments through a release, and
// gives them up once unpinned; other keys are released as usual.
TEST(BlockPool, PinnedKeysKeepTheirSegments) {
  FakeSystem sys;
  BlockPool pool = sys.make();
  const int graph = 0, stream = 0;
  void* g = pool.allocate(4 * MiB, &graph);
  void* s = pool.allocate(4 * MiB, &stream);
  pool.pin(&graph);
  pool.free(g);
  pool.free(s);
  EXPECT_EQ(pool.release_free_segments(), 20 * MiB);  // the unpinned key's segment only
  EXPECT_EQ(pool.reserved(), 20 * MiB);
  EXPECT_EQ(pool.allocate(4 * MiB, &graph), g);  // the pinned key's memory is still its own
  pool.free(g);
  pool.unpin(&graph);
  EXPECT_EQ(pool.release_free_segments(), 20 * MiB);
  EXPECT_EQ(pool.reserved(), 0u);
}

TEST(BlockPool, SplitsASegmentAndReusesTheBestFit) {
  FakeSystem sys;
  BlockPool pool = sys.make();
  void* big = pool.allocate(30 * MiB, nullptr);
  pool.free(big);
  // Two 10 MiB requests and one 5 MiB request fit in the cached 30 MiB segment: no new system memory.
  bool cached = false;
  void* a = pool.allocate(10 * MiB + 1, nullptr, &cached);
  EXPECT_TRUE(cached);
  void* b = pool.allocate(10 * MiB, nullptr);
  void* c = pool.allocate(5 * MiB, nullptr);
  EXPECT_EQ(sys.allocs, 1);
  EXPECT_EQ(static_cast<char*>(b) - static_cast<char*>(a), static_cast<std::ptrdiff_t>(10 * MiB + 512));
  // Best fit: after freeing the 10 MiB block, a 9 MiB request takes it rather than the larger tail.
  pool.free(b);
  EXPECT_EQ(pool.allocate(9 * MiB, nullptr), b);
  pool.free(a);
  pool.free(c);
}

TEST(BlockPool, FreedNeighboursCoalesceIntoTheWholeSegment) {
  FakeSystem sys;
  BlockPool pool = sys.make();
  void* a = pool.allocate(4 * MiB, nullptr);
  void* b = pool.allocate(4 * MiB, nullptr);
  void* c = pool.allocate(4 * MiB, nullptr);
  ASSERT_EQ(sys.allocs, 1);  // one 20 MiB segment
  pool.free(b);
  pool.free(a);
  pool.free(c);
  // One free block again: a request for the whole segment fits without new memory.
  void* whole = pool.allocate(20 * MiB, nullptr);
  EXPECT_EQ(whole, a);
  EXPECT_EQ(sys.allocs, 1);
  pool.free(whole);
  EXPECT_EQ(pool.release_free_segments(), 20 * MiB);
  EXPECT_EQ(sys.frees, 1);
  EXPECT_EQ(pool.reserved(), 0u);
}

TEST(BlockPool, LargeBlocksKeepTheirAlignment) {
  FakeSystem sys;
  BlockPool pool(
      [&](size_t bytes) {
        ++sys.allocs;
        return std::aligned_alloc(4096, bytes);
      },
      [&](void* p) { std::free(p); }, 4096);
  void* a = pool.allocate(3 * MiB + 100, nullptr);
  void* b = pool.allocate(3 * MiB + 100, nullptr);
  EXPECT_EQ(pool.block_size(a), 3 * MiB + 4096);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b) % 4096, 0u);
  EXPECT_EQ(sys.allocs, 1);
  void* small = pool.allocate(1000, nullptr);
  EXPECT_EQ(pool.block_size(small), 1024u);  // small blocks keep 512-byte steps
  pool.free(a);
  pool.free(b);
  pool.free(small);
  EXPECT_THROW(BlockPool([](size_t) { return nullptr; }, [](void*) {}, 768), Error);
}

TEST(BlockPool, SmallRequestsKeepOutOfLargeSegments) {
  FakeSystem sys;
  BlockPool pool = sys.make();
  void* large = pool.allocate(30 * MiB, nullptr);
  pool.free(large);
  void* small = pool.allocate(64 * 1024, nullptr);
  EXPECT_EQ(sys.allocs, 2);  // a 2 MiB small segment, not a piece of the free 30 MiB one
  EXPECT_EQ(pool.reserved(), 32 * MiB);
  pool.free(small);
}

TEST(BlockPool, BlocksAreReusedOnlyOnTheirStream) {
  FakeSystem sys;
  BlockPool pool = sys.make();
  int s1 = 0, s2 = 0;
  void* a = pool.allocate(12 * MiB, &s1);
  EXPECT_EQ(pool.block_stream(a), &s1);
  pool.free(a);
  void* b = pool.allocate(12 * MiB, &s2);
  EXPECT_NE(a, b);
  EXPECT_EQ(sys.allocs, 2);
  EXPECT_EQ(pool.allocate(12 * MiB, &s1), a);
}

TEST(BlockPool, RefusedSystemMemoryReleasesCachedSegmentsAndRetries) {
  FakeSystem sys;
  sys.budget = 40 * MiB;
  BlockPool pool = sys.make();
  void* a = pool.allocate(30 * MiB, nullptr);
  pool.free(a);
  // 30 MiB cached + 32 MiB new would pass the budget: the cached segment goes back first.
  void* b = pool.allocate(32 * MiB, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(sys.frees, 1);
  EXPECT_EQ(pool.reserved(), 32 * MiB);
  // 5 MiB more fits the budget only as a tight segment, not as the usual 20 MiB one.
  void* c = pool.allocate(5 * MiB, nullptr);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(pool.reserved(), 37 * MiB);
  EXPECT_EQ(pool.allocate(32 * MiB, nullptr), nullptr);  // nothing left to release
  pool.free(c);
  EXPECT_EQ(pool.allocated(), 32 * MiB);
  EXPECT_THROW(pool.free(static_cast<char*>(b) + 512), Error);
  pool.free(b);
}

TEST(BlockPool, RandomisedBlocksNeverOverlapAndAccountingHolds) {
  FakeSystem sys;
  BlockPool pool = sys.make();
  std::mt19937_64 rng(7);
  std::map<char*, size_t> live;  // block start -> block size
  const size_t sizes[] = {100, 4000, 300 * 1024, MiB, 3 * MiB + 7, 12 * MiB, 25 * MiB};
  for (int op = 0; op < 4000; ++op) {
    if (live.empty() || (live.size() < 40 && rng() % 5 < 3)) {
      const size_t want = sizes[rng() % 7] + rng() % 2048;
      const auto stream = reinterpret_cast<const void*>(uintptr_t{1} + rng() % 2);
      char* p = static_cast<char*>(pool.allocate(want, stream));
      ASSERT_NE(p, nullptr);
      const size_t size = pool.block_size(p);
      ASSERT_GE(size, want);
      ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);  // the segments' alignment, kept by 512-byte steps
      auto next = live.lower_bound(p);
      ASSERT_TRUE(next == live.end() || p + size <= next->first) << "overlaps the block after it";
      ASSERT_TRUE(next == live.begin() || std::prev(next)->first + std::prev(next)->second <= p)
          << "overlaps the block before it";
      live[p] = size;
    } else {
      auto it = live.begin();
      std::advance(it, static_cast<long>(rng() % live.size()));
      pool.free(it->first);
      live.erase(it);
    }
    size_t total = 0;
    for (const auto& [p, size] : live) total += size;
    ASSERT_EQ(pool.allocated(), total);
    ASSERT_LE(pool.allocated(), pool.reserved());
  }
  for (const auto& [p, size] : live) pool.free(p);
  EXPECT_EQ(pool.allocated(), 0u);
  pool.release_free_segments();
  EXPECT_EQ(pool.reserved(), 0u);
  EXPECT_TRUE(sys.segments.empty());
}

}  // namespace
}  // namespace kolo
