// ResponseCache: the negotiation fast path. Every rank holds an identical cache of recently executed
// requests (name + agreed parameters) in numbered slots.
//
// Protocol: a rank whose new request matches a cached one sends only bit `slot` instead of the serialized
// request; the coordinator decodes bits through its own copy and answers with a bit vector of the slots
// ready on every rank. The caches stay identical because they change only while executing a ResponseList,
// which every rank does in the same order: executed full responses are put() (evicting the least recently
// used slot when full), executed cached slots are touched. Bits sent in cycle t therefore refer to the
// state after cycle t-1 on every rank. Allreduce, broadcast, allgather, alltoall and reducescatter are cached
// (their parameters repeat step after step). A hit needs this rank's exact shape: an allgather/alltoall whose
// first dimension differs from the agreed (rank 0's) one is sent in full, which the coordinator accepts
// beside other ranks' bits (such a tensor is answered in full). Barrier, join and process-set creation carry
// unique names and are never cached.
#pragma once

#include <bit>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "collectives/types.h"

namespace kolo {

class ResponseCache {
 public:
  explicit ResponseCache(int64_t capacity) : capacity_(capacity) {}
  int64_t capacity() const { return capacity_; }
  size_t size() const { return by_name_.size(); }
  static bool cacheable(const Request& r) {
    return r.op == OpType::Allreduce || r.op == OpType::Broadcast || r.op == OpType::Allgather ||
           r.op == OpType::Alltoall || r.op == OpType::Reducescatter;
  }

  // Slot holding a request with this name and identical parameters, if any.
  std::optional<int64_t> lookup(const Request& r) const;
  const Request& at(int64_t slot) const;
  void put(const Request& r);  // insert or refresh (parameters replaced), evicting LRU when full
  void touch(int64_t slot);
  void erase(const std::string& name);
  int64_t words() const { return (capacity_ + 63) / 64; }  // length of a bit vector over the slots

 private:
  struct Slot {
    Request request;
    std::list<int64_t>::iterator lru;
  };
  int64_t capacity_;
  std::vector<std::optional<Slot>> slots_;
  std::unordered_map<std::string, int64_t> by_name_;
  std::list<int64_t> lru_;  // front = most recently used
  std::vector<int64_t> free_;
};

inline void set_bit(std::vector<uint64_t>& bits, int64_t i) { bits[i / 64] |= uint64_t{1} << (i % 64); }
inline bool test_bit(const std::vector<uint64_t>& bits, int64_t i) {
  return i / 64 < static_cast<int64_t>(bits.size()) && (bits[i / 64] >> (i % 64)) & 1u;
}
// Calls f(i) for every set bit i in increasing order (a cycle touches only the set words' bits, not all
// capacity slots).
template <typename F>
void for_each_bit(const std::vector<uint64_t>& bits, F&& f) {
  for (size_t w = 0; w < bits.size(); ++w)
    for (uint64_t word = bits[w]; word != 0; word &= word - 1)
      f(static_cast<int64_t>(w * 64 + static_cast<size_t>(std::countr_zero(word))));
}
inline bool any_bit(const std::vector<uint64_t>& bits) {
  for (uint64_t w : bits)
    if (w) return true;
  return false;
}

}  // namespace kolo
