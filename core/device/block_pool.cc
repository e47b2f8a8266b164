// Best-fit block pool with splitting and coalescing (design in block_pool.h).
#include "core/device/block_pool.h"

#include <functional>
#include <tuple>
#include <utility>
#include <vector>

#include "core/util/error.h"

namespace kolo {

bool BlockPool::BySize::operator()(const Block* a, const Block* b) const {
  const std::less<const void*> before;
  if (a->stream != b->stream) return before(a->stream, b->stream);
  if (a->size != b->size) return a->size < b->size;
  return before(a->ptr, b->ptr);
}

BlockPool::BlockPool(RawAlloc raw_alloc, RawFree raw_free, size_t large_align)
    : raw_alloc_(std::move(raw_alloc)), raw_free_(std::move(raw_free)), large_align_(large_align) {
  KOLO_CHECK(large_align >= kGranule && (large_align & (large_align - 1)) == 0,
             "BlockPool: large-block alignment ", large_align, " is not a power of two >= ", kGranule);
}

BlockPool::~BlockPool() {
  std::vector<Block*> heads;
  for (FreeSet* set : {&small_free_, &large_free_})
    for (Block* b : *set)
      if (!b->prev) heads.push_back(b);
  for (auto& [ptr, b] : live_)
    if (!b->prev) heads.push_back(b);
  for (Block* head : heads) {
    raw_free_(head->ptr);
    for (Block* b = head; b;) {
      Block* next = b->next;
      delete b;
      b = next;
    }
  }
}

size_t BlockPool::round_size(size_t bytes) {
  if (bytes == 0) return kGranule;
  return (bytes + kGranule - 1) / kGranule * kGranule;
}

size_t BlockPool::segment_size(size_t rounded) {
  if (rounded <= kSmallRequest) return kSmallSegment;
  if (rounded <= kMediumRequest) return kMediumSegment;
  return (rounded + kLargeRound - 1) / kLargeRound * kLargeRound;
}

BlockPool::Block* BlockPool::take_best_fit(size_t size, const void* stream, bool small) {
  FreeSet& set = pool(small);
  Block key{nullptr, size, stream, small};
  auto it = set.lower_bound(&key);
  if (it == set.end() || (*it)->stream != stream) return nullptr;
  Block* b = *it;
  set.erase(it);
  return b;
}

BlockPool::Block* BlockPool::new_segment(size_t size, const void* stream, bool small) {
  size_t bytes = segment_size(size);
  void* p = raw_alloc_(bytes);
  if (!p && release_free_segments() > 0) p = raw_alloc_(bytes);
  if (!p && bytes > size) p = raw_alloc_(bytes = size);  // short of memory (or under a limit): a tight segment
  if (!p) return nullptr;
  reserved_ += bytes;
  ++segments_;
  return new Block{static_cast<char*>(p), bytes, stream, small};
}

void* BlockPool::allocate(size_t bytes, const void* stream, bool* from_cache) {
  size_t size = round_size(bytes);
  const bool small = size <= kSmallRequest;
  if (!small) size = (size + large_align_ - 1) / large_align_ * large_align_;
  Block* b = take_best_fit(size, stream, small);
  if (from_cache) *from_cache = b != nullptr;
  if (!b) b = new_segment(size, stream, small);
  if (!b) return nullptr;
  // A large remainder of at most kSmallRequest stays with the block: splitting it off would leave slivers
  // that only small requests (which never come to this pool) could use.
  const size_t rest = b->size - size;
  if (small ? rest >= kGranule : rest > kSmallRequest) {
    Block* r = new Block{b->ptr + size, rest, stream, small};
    r->prev = b;
    r->next = b->next;
    if (b->next) b->next->prev = r;
    b->next = r;
    b->size = size;
    pool(small).insert(r);
  }
  b->in_use = true;
  live_.emplace(b->ptr, b);
  allocated_ += b->size;
  return b->ptr;
}

void BlockPool::free(void* ptr) {
  auto it = live_.find(ptr);
  KOLO_CHECK(it != live_.end(), "BlockPool: freeing ", ptr, ", which is not a live block of this pool");
  Block* b = it->second;
  live_.erase(it);
  allocated_ -= b->size;
  b->in_use = false;
  FreeSet& set = pool(b->small);
  if (Block* p = b->prev; p && !p->in_use) {
    set.erase(p);
    absorb_next(p);
    b = p;
  }
  if (Block* n = b->next; n && !n->in_use) {
    set.erase(n);
    absorb_next(b);
  }
  set.insert(b);
}

void BlockPool::absorb_next(Block* b) {
  Block* n = b->next;
  b->size += n->size;
  b->next = n->next;
  if (n->next) n->next->prev = b;
  delete n;
}

size_t BlockPool::block_size(const void* ptr) const {
  auto it = live_.find(const_cast<void*>(ptr));
  KOLO_CHECK(it != live_.end(), "BlockPool: ", ptr, " is not a live block of this pool");
  return it->second->size;
}

const void* BlockPool::block_stream(const void* ptr) const {
  auto it = live_.find(const_cast<void*>(ptr));
  KOLO_CHECK(it != live_.end(), "BlockPool: ", ptr, " is not a live block of this pool");
  return it->second->stream;
}

size_t BlockPool::release_free_segments() {
  size_t released = 0;
  for (FreeSet* set : {&small_free_, &large_free_}) {
    for (auto it = set->begin(); it != set->end();) {
      Block* b = *it;
      if (b->prev || b->next || pinned_.count(b->stream)) {
        ++it;
        continue;
      }
      it = set->erase(it);
      raw_free_(b->ptr);
      released += b->size;
      reserved_ -= b->size;
      --segments_;
      delete b;
    }
  }
  return released;
}

}  // namespace kolo
