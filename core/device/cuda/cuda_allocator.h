// Caching allocator for CUDA device memory and for pinned (page-locked) host memory.
//
// Blocks are carved from cached segments by a BlockPool (core/device/block_pool.h: 512-byte rounding, best
// fit, splitting, coalescing, a separate pool for requests up to 1 MiB), so a training step that repeats its
// shapes stops calling cudaMalloc after the first iteration and a block costs what was asked.
//
// Stream-aware reuse (device memory): a block belongs to the stream that was current when it was
// allocated, and a freed block is reused only by allocations on that stream — work on one stream runs in
// order, so the new owner's kernels cannot overtake the old owner's. When a block is also used on another
// stream (e.g. the NCCL stream reads a gradient), record_stream() notes it; on free an event is recorded on
// each such stream and the block returns to the pool only after those events complete (polled on the next
// allocation), again without a host sync.
//
// Private pools (CUDA graph capture): between begin_private_pool(stream, key) and end_private_pool(stream),
// allocations on `stream` come from blocks of their own key, which no other allocation is given and whose
// memory stays reserved until release_private_pool(key): a captured graph replays into the same addresses,
// so they must not change owner while it exists. Blocks of the pool freed during capture are reused within
// it, in the stream order the graph keeps.
//
// Limit: KOLO_CUDA_MEMORY_LIMIT (bytes, with an optional K/M/G/T suffix) caps the reserved bytes of each
// device allocator; set_limit() does the same from C++. When a request would pass the limit or cudaMalloc
// fails, cached segments are released and the request retried once; then it throws kolo::Error with the stats.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/device/allocator.h"
#include "core/device/block_pool.h"

namespace kolo {

class CudaCachingAllocator final : public Allocator {
 public:
  enum class Kind { Device, PinnedHost };
  // `device` is the CUDA device (for PinnedHost: the device whose context owns the mapping).
  CudaCachingAllocator(Kind kind, int device);
  ~CudaCachingAllocator() override;

  void* allocate(size_t bytes) override;  // on the device's current stream
  void* allocate(size_t bytes, cudaStream_t stream);
  void deallocate(void* ptr, size_t bytes) override;
  // `ptr` (a live block of this allocator) is also used by work on `stream`.
  void record_stream(void* ptr, cudaStream_t stream);
  // See "Private pools" above. A stream has at most one private pool at a time; `key` is any unique address.
  void begin_private_pool(cudaStream_t stream, const void* key);
  void end_private_pool(cudaStream_t stream);
  void release_private_pool(const void* key);
  bool owns(const void* ptr) const;

  MemoryStats stats() const override;
  void reset_peak() override;
  void empty_cache() override;
  Device device() const override;

  size_t limit() const;
  void set_limit(size_t bytes);  // 0 = unlimited

  // Parses "1073741824", "512M", "16G"; throws kolo::Error naming `what` on anything else.
  static size_t parse_bytes(const std::string& text, const std::string& what);

 private:
  struct Pending {
    void* ptr;
    std::vector<cudaEvent_t> events;
  };

  void* raw_alloc(size_t size);
  void raw_free(void* ptr);
  void collect_pending_locked();
  void release_cached_locked();
  cudaEvent_t take_event_locked();

  const Kind kind_;
  const int device_;
  mutable std::mutex mu_;
  size_t limit_ = 0;
  bool closing_ = false;  // in the destructor: the driver may be unloading, errors are ignored
  std::unordered_map<void*, std::vector<cudaStream_t>> used_on_;  // other streams recorded per live block
  std::unordered_map<cudaStream_t, const void*> private_;         // streams allocating from a private pool
  std::unordered_map<const void*, cudaStream_t> private_stream_;  // each private key's stream
  std::vector<Pending> pending_;
  std::vector<cudaEvent_t> spare_events_;
  MemoryStats stats_;
  BlockPool pool_;  // last: its destructor returns the segments through raw_free
};

}  // namespace kolo
