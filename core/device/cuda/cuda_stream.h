// CUDA streams and events behind core/device/stream.h, the per-thread current stream, and device guards.
//
// Each device has one main stream (non-blocking, so it never serialises with the legacy default stream)
// owned by the backend; it is every thread's current stream unless a CudaStreamGuard installs another
// (e.g. the collectives' communication stream). Kernels and the caching allocator use the current stream,
// and work is ordered across streams only with events (Event::block), never with host syncs.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>

#include "core/device/stream.h"

namespace kolo {

class CudaStream final : public Stream {
 public:
  // A new non-blocking stream on `device`; lower `priority` values run first (see cudaDeviceGetStreamPriorityRange).
  static std::unique_ptr<CudaStream> create(int device, int priority = 0);
  ~CudaStream() override;
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;

  Device device() const override { return Device::cuda(device_); }
  void synchronize() override;
  void* native() const override { return stream_; }
  cudaStream_t get() const { return stream_; }

 private:
  CudaStream(int device, cudaStream_t stream) : device_(device), stream_(stream) {}
  int device_;
  cudaStream_t stream_;
};

class CudaEvent final : public Event {
 public:
  // Timing events cost more to record; only benchmarks ask for them. Timing-free events are recycled.
  explicit CudaEvent(int device, bool timing = false);
  ~CudaEvent() override;
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;

  void record(Stream& stream) override;
  void block(Stream& stream) override;
  bool query() override;
  void synchronize() override;
  void record(cudaStream_t stream);
  void block(cudaStream_t stream);
  float elapsed_ms(const CudaEvent& start) const;  // both recorded with timing = true
  double elapsed_ms(const Event& start) const override;
  cudaEvent_t get() const { return event_; }

 private:
  int device_;
  bool timing_;
  cudaEvent_t event_ = nullptr;  // timing-free ones come from, and go back to, a per-device pool
};

// The stream kernels on `device` are enqueued on from this thread.
CudaStream& current_cuda_stream(int device);
inline cudaStream_t current_cuda_stream_native(int device) { return current_cuda_stream(device).get(); }

// Makes `stream` the current stream of its device on this thread for the guard's lifetime.
class CudaStreamGuard {
 public:
  explicit CudaStreamGuard(CudaStream& stream);
  ~CudaStreamGuard();
  CudaStreamGuard(const CudaStreamGuard&) = delete;
  CudaStreamGuard& operator=(const CudaStreamGuard&) = delete;

 private:
  int device_;
  CudaStream* previous_;
};

// Makes `device` the calling thread's CUDA device for the guard's lifetime (no-op when it already is).
class CudaDeviceGuard {
 public:
  explicit CudaDeviceGuard(int device);
  ~CudaDeviceGuard();
  CudaDeviceGuard(const CudaDeviceGuard&) = delete;
  CudaDeviceGuard& operator=(const CudaDeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

}  // namespace kolo
