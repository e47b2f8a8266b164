// Caching allocator for CUDA device memory and pinned host memory (see cuda_allocator.h for the protocol).
#include "core/device/cuda/cuda_allocator.h"

#include <algorithm>
#include <cctype>

#include "core/device/cuda/cuda_check.h"
#include "core/device/cuda/cuda_stream.h"

namespace kolo {

namespace {
constexpr size_t kSmallGranule = 512;
constexpr size_t kSmallLimit = size_t{1} << 20;
}  // namespace

CudaCachingAllocator::CudaCachingAllocator(Kind kind, int device) : kind_(kind), device_(device) {}

CudaCachingAllocator::~CudaCachingAllocator() {
  // At process exit the driver may already be unloading; release what we can and ignore the rest.
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& p : pending_) {
    for (cudaEvent_t e : p.events) (void)cudaEventDestroy(e);
    live_.emplace(p.ptr, p.block);
  }
  pending_.clear();
  for (auto& [key, ptrs] : free_)
    for (void* ptr : ptrs) kind_ == Kind::Device ? (void)cudaFree(ptr) : (void)cudaFreeHost(ptr);
  for (cudaEvent_t e : spare_events_) (void)cudaEventDestroy(e);
}

size_t CudaCachingAllocator::round_size(size_t bytes) {
  if (bytes == 0) bytes = 1;
  if (bytes < kSmallLimit) return (bytes + kSmallGranule - 1) / kSmallGranule * kSmallGranule;
  size_t p = kSmallLimit;
  while (p * 2 < bytes) p <<= 1;
  const size_t step = p / 4;
  return (bytes + step - 1) / step * step;
}

size_t CudaCachingAllocator::parse_bytes(const std::string& text, const std::string& what) {
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  KOLO_CHECK(i > 0 && i <= 18, what, ": expected a byte count such as 1073741824, 512M or 16G, got '", text, "'");
  size_t value = std::stoull(text.substr(0, i));
  std::string suffix = text.substr(i);
  if (suffix.size() == 2 && (suffix[1] == 'B' || suffix[1] == 'b')) suffix.pop_back();
  int shift = 0;
  if (suffix.empty()) {
    shift = 0;
  } else if (suffix.size() == 1) {
    switch (std::toupper(static_cast<unsigned char>(suffix[0]))) {
      case 'K': shift = 10; break;
      case 'M': shift = 20; break;
      case 'G': shift = 30; break;
      case 'T': shift = 40; break;
      default: KOLO_FAIL(what, ": unknown size suffix in '", text, "' (use K, M, G or T)");
    }
  } else {
    KOLO_FAIL(what, ": unknown size suffix in '", text, "' (use K, M, G or T)");
  }
  KOLO_CHECK(shift == 0 || value <= (~size_t{0} >> shift), what, ": '", text, "' overflows");
  return value << shift;
}

Device CudaCachingAllocator::device() const {
  return kind_ == Kind::Device ? Device::cuda(device_) : Device::cpu();
}

void* CudaCachingAllocator::raw_alloc(size_t size) {
  CudaDeviceGuard guard(device_);
  void* p = nullptr;
  const cudaError_t st = kind_ == Kind::Device ? cudaMalloc(&p, size) : cudaHostAlloc(&p, size, cudaHostAllocPortable);
  if (st != cudaSuccess) {
    (void)cudaGetLastError();  // out-of-memory is not sticky; clear it so the retry sees a clean state
    return nullptr;
  }
  return p;
}

void CudaCachingAllocator::raw_free(void* ptr) {
  CudaDeviceGuard guard(device_);
  KOLO_CUDA_CHECK(kind_ == Kind::Device ? cudaFree(ptr) : cudaFreeHost(ptr));
}

cudaEvent_t CudaCachingAllocator::take_event_locked() {
  if (!spare_events_.empty()) {
    cudaEvent_t e = spare_events_.back();
    spare_events_.pop_back();
    return e;
  }
  CudaDeviceGuard guard(device_);
  cudaEvent_t e = nullptr;
  KOLO_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return e;
}

void CudaCachingAllocator::collect_pending_locked() {
  auto done = [&](Pending& p) {
    for (cudaEvent_t e : p.events) {
      const cudaError_t st = cudaEventQuery(e);
      if (st == cudaErrorNotReady) {
        (void)cudaGetLastError();
        return false;
      }
      KOLO_CUDA_CHECK(st);
    }
    return true;
  };
  auto it = pending_.begin();
  while (it != pending_.end()) {
    if (done(*it)) {
      for (cudaEvent_t e : it->events) spare_events_.push_back(e);
      free_[{it->block.stream, it->block.size}].push_back(it->ptr);
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
}

void CudaCachingAllocator::release_cached_locked() {
  // Blocks still waiting on other streams are released too once that work is done.
  for (auto& p : pending_)
    for (cudaEvent_t e : p.events) KOLO_CUDA_CHECK(cudaEventSynchronize(e));
  collect_pending_locked();
  for (auto& [key, ptrs] : free_) {
    for (void* ptr : ptrs) raw_free(ptr);
    stats_.reserved -= key.second * ptrs.size();
  }
  free_.clear();
}

void* CudaCachingAllocator::allocate(size_t bytes) {
  return allocate(bytes, kind_ == Kind::Device ? current_cuda_stream_native(device_) : nullptr);
}

void* CudaCachingAllocator::allocate(size_t bytes, cudaStream_t stream) {
  const size_t size = round_size(bytes);
  if (kind_ == Kind::PinnedHost) stream = nullptr;
  std::lock_guard<std::mutex> lock(mu_);
  stats_.allocations++;
  if (!pending_.empty()) collect_pending_locked();
  void* p = nullptr;
  auto it = free_.find({stream, size});
  if (it != free_.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
    stats_.cache_hits++;
  } else {
    const bool over_limit = limit_ && stats_.reserved + size > limit_;
    if (!over_limit) p = raw_alloc(size);
    if (!p) {
      release_cached_locked();
      if (!limit_ || stats_.reserved + size <= limit_) p = raw_alloc(size);
    }
    KOLO_CHECK(p != nullptr, kind_ == Kind::Device ? "CUDA" : "pinned host", " allocator on cuda:", device_,
               ": out of memory allocating ", bytes, " bytes (", stats_.current, " in use, ", stats_.reserved,
               " reserved, peak ", stats_.peak, ", limit ",
               limit_ ? std::to_string(limit_) : std::string("none"), ")");
    stats_.reserved += size;
  }
  live_[p] = Block{size, stream, {}};
  stats_.current += size;
  stats_.peak = std::max(stats_.peak, stats_.current);
  return p;
}

void CudaCachingAllocator::deallocate(void* ptr, size_t) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  KOLO_CHECK(it != live_.end(), "CUDA allocator on cuda:", device_, ": freeing ", ptr,
             " which it did not allocate");
  Block block = std::move(it->second);
  live_.erase(it);
  stats_.current -= block.size;
  if (block.used_on.empty()) {
    free_[{block.stream, block.size}].push_back(ptr);
    return;
  }
  Pending pending{ptr, Block{block.size, block.stream, {}}, {}};
  CudaDeviceGuard guard(device_);
  for (cudaStream_t s : block.used_on) {
    cudaEvent_t e = take_event_locked();
    KOLO_CUDA_CHECK(cudaEventRecord(e, s));
    pending.events.push_back(e);
  }
  pending_.push_back(std::move(pending));
}

void CudaCachingAllocator::record_stream(void* ptr, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  KOLO_CHECK(it != live_.end(), "record_stream: ", ptr, " is not a live block of the allocator on cuda:", device_);
  Block& b = it->second;
  if (stream == b.stream && kind_ == Kind::Device) return;
  if (std::find(b.used_on.begin(), b.used_on.end(), stream) == b.used_on.end()) b.used_on.push_back(stream);
}

bool CudaCachingAllocator::owns(const void* ptr) const {
  std::lock_guard<std::mutex> lock(mu_);
  return live_.count(const_cast<void*>(ptr)) != 0;
}

MemoryStats CudaCachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CudaCachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak = stats_.current;
}

void CudaCachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  release_cached_locked();
}

size_t CudaCachingAllocator::limit() const {
  std::lock_guard<std::mutex> lock(mu_);
  return limit_;
}

void CudaCachingAllocator::set_limit(size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  limit_ = bytes;
}

}  // namespace kolo
