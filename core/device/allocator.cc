// CPU caching pool allocator.
#include "core/device/allocator.h"

#include <cstdlib>
#include <new>

#include "core/device/device_backend.h"
#include "core/util/error.h"

namespace kolo {

CpuPoolAllocator::~CpuPoolAllocator() { empty_cache(); }

size_t CpuPoolAllocator::size_class(size_t bytes) {
  if (bytes <= 4096) {
    size_t c = kAlignment;
    while (c < bytes) c <<= 1;
    return c;
  }
  // Four classes per power of two keep waste under 25% while letting similar sizes share blocks.
  size_t p = 4096;
  while (p * 2 < bytes) p <<= 1;
  const size_t step = p / 4;
  return ((bytes + step - 1) / step) * step;
}

void* CpuPoolAllocator::allocate(size_t bytes) {
  const size_t cls = size_class(bytes == 0 ? 1 : bytes);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.allocations++;
  void* p = nullptr;
  auto it = free_.find(cls);
  if (it != free_.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
    stats_.cache_hits++;
  } else {
    p = std::aligned_alloc(kAlignment, cls);
    if (!p) {
      // Retry once after releasing the cache: fragmentation across classes can exhaust memory.
      for (auto& [c, blocks] : free_) {
        for (void* b : blocks) std::free(b);
        stats_.reserved -= c * blocks.size();
        blocks.clear();
      }
      p = std::aligned_alloc(kAlignment, cls);
    }
    KOLO_CHECK(p != nullptr, "CPU allocator: out of memory allocating ", bytes, " bytes (",
               stats_.current, " in use)");
    stats_.reserved += cls;
  }
  stats_.current += cls;
  if (stats_.current > stats_.peak) stats_.peak = stats_.current;
  return p;
}

void CpuPoolAllocator::deallocate(void* ptr, size_t bytes) {
  if (!ptr) return;
  const size_t cls = size_class(bytes == 0 ? 1 : bytes);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.current -= cls;
  free_[cls].push_back(ptr);
}

MemoryStats CpuPoolAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CpuPoolAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak = stats_.current;
}

void CpuPoolAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [cls, blocks] : free_) {
    for (void* b : blocks) std::free(b);
    stats_.reserved -= cls * blocks.size();
  }
  free_.clear();
}

Allocator& allocator_for(Device device) { return device_backend(device.type).allocator(device.index); }

}  // namespace kolo
