// BlockPool: the block bookkeeping shared by the CPU and CUDA caching allocators. Memory is obtained from the
// system in segments and handed out as blocks carved from them:
// - sizes round up to 512 bytes only, so a block costs what was asked (binning to a few sizes per power of
//   two wasted ~14% of ResNet-50's activation memory);
// - a request takes the smallest free block of its pool and stream that fits (best fit), and the remainder is
//   split off as a free block; a freed block merges with free neighbours of its segment, so a step whose
//   shapes change (the last batch of an epoch, a longer sentence) reuses memory instead of growing;
// - requests up to 1 MiB use a pool of 2 MiB segments apart from the large blocks, which keeps small
//   short-lived tensors from fragmenting the large segments; requests up to 10 MiB get 20 MiB segments and
//   larger ones a segment of their size rounded to 2 MiB; when such a segment cannot be had (memory short,
//   or an allocator's limit), one of exactly the rounded request.
// Blocks belong to a stream key (opaque; nullptr for CPU memory): a freed block is reused only by requests
// on the same stream, whose work runs in order after the previous owner's. A pinned key's segments are never
// given back to the system, even wholly free: a captured CUDA graph replays into them.
// Not thread-safe: the allocators call it under their own lock.
#pragma once

#include <cstddef>
#include <functional>
#include <set>
#include <unordered_map>

namespace kolo {

class BlockPool {
 public:
  using RawAlloc = std::function<void*(size_t bytes)>;  // nullptr when the system refuses
  using RawFree = std::function<void(void* ptr)>;

  static constexpr size_t kGranule = 512;
  static constexpr size_t kSmallRequest = size_t{1} << 20;   // up to this: the small pool
  static constexpr size_t kSmallSegment = size_t{2} << 20;
  static constexpr size_t kMediumRequest = size_t{10} << 20;  // up to this: 20 MiB segments
  static constexpr size_t kMediumSegment = size_t{20} << 20;
  static constexpr size_t kLargeRound = size_t{2} << 20;

  // Blocks above kSmallRequest start on multiples of `large_align` from their segment's base (a power of two
  // >= kGranule; the CPU pool uses pages, with page-aligned segments).
  BlockPool(RawAlloc raw_alloc, RawFree raw_free, size_t large_align = kGranule);
  ~BlockPool();  // returns every segment to the system; blocks still handed out become invalid
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  // A block of at least `bytes` for `stream`, or nullptr when the system refuses a new segment even after
  // the wholly free segments were released. `from_cache` tells whether no new segment was needed.
  void* allocate(size_t bytes, const void* stream, bool* from_cache = nullptr);
  // Returns a block from allocate() to its pool.
  void free(void* ptr);
  bool owns(const void* ptr) const { return live_.count(const_cast<void*>(ptr)) != 0; }
  size_t block_size(const void* ptr) const;         // of a live block
  const void* block_stream(const void* ptr) const;  // of a live block
  // Gives the segments with no block in use back to the system, except pinned keys'; returns the bytes released.
  size_t release_free_segments();
  void pin(const void* stream) { pinned_.insert(stream); }
  void unpin(const void* stream) { pinned_.erase(stream); }

  size_t allocated() const { return allocated_; }  // bytes of the blocks handed out
  size_t reserved() const { return reserved_; }    // bytes of all segments
  size_t segments() const { return segments_; }

  static size_t round_size(size_t bytes);  // to kGranule
  static size_t segment_size(size_t rounded);

 private:
  struct Block {
    char* ptr;
    size_t size;
    const void* stream;
    bool small;
    bool in_use = false;
    Block* prev = nullptr;  // neighbours within the segment, by address
    Block* next = nullptr;
  };
  struct BySize {
    bool operator()(const Block* a, const Block* b) const;
  };
  using FreeSet = std::set<Block*, BySize>;

  FreeSet& pool(bool small) { return small ? small_free_ : large_free_; }
  Block* take_best_fit(size_t size, const void* stream, bool small);
  Block* new_segment(size_t size, const void* stream, bool small);
  // Merges b's next neighbour (free, already out of its free set) into b.
  static void absorb_next(Block* b);

  RawAlloc raw_alloc_;
  RawFree raw_free_;
  size_t large_align_;
  FreeSet small_free_, large_free_;
  std::unordered_map<void*, Block*> live_;
  std::set<const void*> pinned_;
  size_t allocated_ = 0, reserved_ = 0, segments_ = 0;
};

}  // namespace kolo
