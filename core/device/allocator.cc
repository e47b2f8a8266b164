// CPU caching pool allocator.
#include "core/device/allocator.h"

#include <algorithm>
#include <cstdlib>

#include "core/device/device_backend.h"
#include "core/util/error.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
// Cached blocks are poisoned while free, so ASan reports a tensor used after its storage went back to the pool
// (the pool's segments stay allocated, which would otherwise hide it).
#define KOLO_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define KOLO_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define KOLO_POISON(p, n) ((void)(p), (void)(n))
#define KOLO_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace kolo {

CpuPoolAllocator::CpuPoolAllocator()
    : pool_([](size_t bytes) { return std::aligned_alloc(kLargeAlignment, bytes); }, [](void* p) { std::free(p); },
            kLargeAlignment) {}

CpuPoolAllocator::~CpuPoolAllocator() = default;

void* CpuPoolAllocator::allocate(size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.allocations++;
  bool cached = false;
  void* p = pool_.allocate(bytes, nullptr, &cached);
  KOLO_CHECK(p != nullptr, "CPU allocator: out of memory allocating ", bytes, " bytes (", stats_.current,
             " in use, ", pool_.reserved(), " reserved)");
  if (cached) stats_.cache_hits++;
  const size_t size = pool_.block_size(p);
  KOLO_UNPOISON(p, size);
  stats_.current += size;
  stats_.peak = std::max(stats_.peak, stats_.current);
  stats_.reserved = pool_.reserved();
  return p;
}

void CpuPoolAllocator::deallocate(void* ptr, size_t) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  const size_t size = pool_.block_size(ptr);
  stats_.current -= size;
  KOLO_POISON(ptr, size);
  pool_.free(ptr);
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
  pool_.release_free_segments();
  stats_.reserved = pool_.reserved();
}

Allocator& allocator_for(Device device) { return device_backend(device.type).allocator(device.index); }

}  // namespace kolo
