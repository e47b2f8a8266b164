// LRU slots with stable numbers, so that a slot index means the same request on every rank.
#include "collectives/response_cache.h"

#include "core/util/error.h"

namespace kolo {

std::optional<int64_t> ResponseCache::lookup(const Request& r) const {
  if (!cacheable(r)) return std::nullopt;
  auto it = by_name_.find(r.name);
  if (it == by_name_.end()) return std::nullopt;
  const Request& c = slots_[it->second]->request;
  if (!c.mismatch(r).empty() || c.shape != r.shape) return std::nullopt;
  return it->second;
}

const Request& ResponseCache::at(int64_t slot) const {
  KOLO_CHECK(slot >= 0 && slot < static_cast<int64_t>(slots_.size()) && slots_[slot], "response cache: slot ",
             slot, " is empty (caches diverged between ranks)");
  return slots_[slot]->request;
}

void ResponseCache::put(const Request& r) {
  if (capacity_ == 0 || !cacheable(r)) return;
  auto it = by_name_.find(r.name);
  if (it != by_name_.end()) {
    slots_[it->second]->request = r;
    touch(it->second);
    return;
  }
  int64_t slot;
  if (!free_.empty()) {
    slot = free_.back();
    free_.pop_back();
  } else if (static_cast<int64_t>(slots_.size()) < capacity_) {
    slot = static_cast<int64_t>(slots_.size());
    slots_.emplace_back();
  } else {
    slot = lru_.back();
    erase(slots_[slot]->request.name);
    free_.pop_back();
  }
  lru_.push_front(slot);
  slots_[slot] = Slot{r, lru_.begin()};
  by_name_[r.name] = slot;
}

void ResponseCache::touch(int64_t slot) {
  at(slot);
  lru_.erase(slots_[slot]->lru);
  lru_.push_front(slot);
  slots_[slot]->lru = lru_.begin();
}

void ResponseCache::erase(const std::string& name) {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) return;
  const int64_t slot = it->second;
  lru_.erase(slots_[slot]->lru);
  slots_[slot].reset();
  by_name_.erase(it);
  free_.push_back(slot);
}

}  // namespace kolo
