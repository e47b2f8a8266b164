// Caching allocator for CUDA device memory and pinned host memory (see cuda_allocator.h for the protocol).
#include "core/device/cuda/cuda_allocator.h"

#include <algorithm>
#include <cctype>

#include "core/device/cuda/cuda_check.h"
#include "core/device/cuda/cuda_stream.h"

namespace kolo {

CudaCachingAllocator::CudaCachingAllocator(Kind kind, int device)
    : kind_(kind),
      device_(device),
      pool_([this](size_t bytes) { return raw_alloc(bytes); }, [this](void* p) { raw_free(p); }) {}

CudaCachingAllocator::~CudaCachingAllocator() {
  // At process exit the driver may already be unloading; release what we can and ignore the rest. The pool
  // returns its segments (through raw_free) when it is destroyed, after this body.
  std::lock_guard<std::mutex> lock(mu_);
  closing_ = true;
  for (auto& p : pending_)
    for (cudaEvent_t e : p.events) (void)cudaEventDestroy(e);
  pending_.clear();
  for (cudaEvent_t e : spare_events_) (void)cudaEventDestroy(e);
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

// Called by the pool under mu_: a new segment, or nullptr past the limit or when CUDA refuses.
void* CudaCachingAllocator::raw_alloc(size_t size) {
  if (limit_ && pool_.reserved() + size > limit_) return nullptr;
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
  if (closing_) {
    kind_ == Kind::Device ? (void)cudaFree(ptr) : (void)cudaFreeHost(ptr);
    return;
  }
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
      pool_.free(it->ptr);
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
  pool_.release_free_segments();
  stats_.reserved = pool_.reserved();
}

void* CudaCachingAllocator::allocate(size_t bytes) {
  return allocate(bytes, kind_ == Kind::Device ? current_cuda_stream_native(device_) : nullptr);
}

void* CudaCachingAllocator::allocate(size_t bytes, cudaStream_t stream) {
  if (kind_ == Kind::PinnedHost) stream = nullptr;
  std::lock_guard<std::mutex> lock(mu_);
  stats_.allocations++;
  if (!pending_.empty()) collect_pending_locked();
  const auto priv = private_.find(stream);
  const void* key = priv == private_.end() ? static_cast<const void*>(stream) : priv->second;
  bool cached = false;
  void* p = pool_.allocate(bytes, key, &cached);
  if (!p) {
    // The pool released its wholly free segments already; blocks parked on other streams' events may free more.
    release_cached_locked();
    p = pool_.allocate(bytes, key, &cached);
  }
  stats_.reserved = pool_.reserved();
  KOLO_CHECK(p != nullptr, kind_ == Kind::Device ? "CUDA" : "pinned host", " allocator on cuda:", device_,
             ": out of memory allocating ", bytes, " bytes (", stats_.current, " in use, ", stats_.reserved,
             " reserved, peak ", stats_.peak, ", limit ", limit_ ? std::to_string(limit_) : std::string("none"), ")");
  if (cached) stats_.cache_hits++;
  stats_.current += pool_.block_size(p);
  stats_.peak = std::max(stats_.peak, stats_.current);
  return p;
}

void CudaCachingAllocator::deallocate(void* ptr, size_t) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  KOLO_CHECK(pool_.owns(ptr), "CUDA allocator on cuda:", device_, ": freeing ", ptr, " which it did not allocate");
  stats_.current -= pool_.block_size(ptr);
  auto used = used_on_.find(ptr);
  if (used == used_on_.end()) {
    pool_.free(ptr);
    return;
  }
  Pending pending{ptr, {}};
  CudaDeviceGuard guard(device_);
  for (cudaStream_t s : used->second) {
    cudaEvent_t e = take_event_locked();
    KOLO_CUDA_CHECK(cudaEventRecord(e, s));
    pending.events.push_back(e);
  }
  used_on_.erase(used);
  pending_.push_back(std::move(pending));
}

void CudaCachingAllocator::record_stream(void* ptr, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(mu_);
  KOLO_CHECK(pool_.owns(ptr), "record_stream: ", ptr, " is not a live block of the allocator on cuda:", device_);
  const void* key = pool_.block_stream(ptr);
  const auto priv = private_stream_.find(key);
  if (kind_ == Kind::Device && stream == (priv == private_stream_.end() ? key : priv->second)) return;
  std::vector<cudaStream_t>& streams = used_on_[ptr];
  if (std::find(streams.begin(), streams.end(), stream) == streams.end()) streams.push_back(stream);
}

void CudaCachingAllocator::begin_private_pool(cudaStream_t stream, const void* key) {
  std::lock_guard<std::mutex> lock(mu_);
  KOLO_CHECK(kind_ == Kind::Device, "begin_private_pool: pinned host memory has no stream pools");
  KOLO_CHECK(!private_.count(stream), "begin_private_pool: stream ", static_cast<void*>(stream), " on cuda:", device_,
             " already allocates from a private pool");
  KOLO_CHECK(!private_stream_.count(key) || private_stream_[key] == stream, "begin_private_pool: key ", key,
             " belongs to another stream");
  private_[stream] = key;
  private_stream_[key] = stream;
  pool_.pin(key);
}

void CudaCachingAllocator::end_private_pool(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(mu_);
  private_.erase(stream);
}

void CudaCachingAllocator::release_private_pool(const void* key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = private_stream_.find(key);
  if (it == private_stream_.end()) return;
  if (auto p = private_.find(it->second); p != private_.end() && p->second == key) private_.erase(p);
  private_stream_.erase(it);
  pool_.unpin(key);
}

bool CudaCachingAllocator::owns(const void* ptr) const {
  std::lock_guard<std::mutex> lock(mu_);
  return pool_.owns(ptr);
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
