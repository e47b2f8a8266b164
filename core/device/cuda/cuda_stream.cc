// CUDA streams, events, the per-thread current stream and the device guard.
#include "core/device/cuda/cuda_stream.h"

#include <map>
#include <mutex>
#include <vector>

#include "core/device/cuda/cuda_backend.h"
#include "core/device/cuda/cuda_check.h"
#include "core/device/cuda/deferred_errors.h"

namespace kolo {

namespace {

// Per-thread override of each device's current stream; nullptr means the device's main stream.
thread_local std::vector<CudaStream*> tls_current_streams;

CudaStream*& tls_slot(int device) {
  if (static_cast<int>(tls_current_streams.size()) <= device) tls_current_streams.resize(device + 1, nullptr);
  return tls_current_streams[device];
}

// Recycled timing-free events, per device. Creating and destroying an event costs microseconds of driver
// time, and the collectives make one per enqueued device tensor. Recycling is safe: a stream's wait captures
// the event's last record when the wait is enqueued, so recording the event again later does not move it.
// The pool is never destroyed: its events go with the CUDA context at process exit.
class EventPool {
 public:
  cudaEvent_t take(int device) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& v = free_[device];
    if (v.empty()) return nullptr;
    cudaEvent_t e = v.back();
    v.pop_back();
    return e;
  }
  bool give(int device, cudaEvent_t e) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& v = free_[device];
    if (v.size() >= kMaxFree) return false;
    v.push_back(e);
    return true;
  }

 private:
  static constexpr size_t kMaxFree = 4096;
  std::mutex mu_;
  std::map<int, std::vector<cudaEvent_t>> free_;
};

EventPool& event_pool() {
  static auto* pool = new EventPool;
  return *pool;
}

cudaStream_t native_of(Stream& stream) {
  KOLO_CHECK(stream.device().is_cuda(), "CUDA event used with a ", stream.device().str(), " stream");
  return static_cast<cudaStream_t>(stream.native());
}

}  // namespace

std::unique_ptr<CudaStream> CudaStream::create(int device, int priority) {
  CudaDeviceGuard guard(device);
  cudaStream_t s = nullptr;
  KOLO_CUDA_CHECK(cudaStreamCreateWithPriority(&s, cudaStreamNonBlocking, priority));
  return std::unique_ptr<CudaStream>(new CudaStream(device, s));
}

CudaStream::~CudaStream() {
  // Destruction at process exit may find the driver already shut down; nothing useful can be done then.
  if (stream_) (void)cudaStreamDestroy(stream_);
}

void CudaStream::synchronize() {
  KOLO_CUDA_CHECK(cudaStreamSynchronize(stream_));
  cuda::raise_deferred_errors(device_);
}

CudaEvent::CudaEvent(int device, bool timing) : device_(device), timing_(timing) {
  if (!timing && (event_ = event_pool().take(device))) return;
  CudaDeviceGuard guard(device);
  KOLO_CUDA_CHECK(cudaEventCreateWithFlags(&event_, timing ? cudaEventDefault : cudaEventDisableTiming));
}

CudaEvent::~CudaEvent() {
  if (!event_ || (!timing_ && event_pool().give(device_, event_))) return;
  (void)cudaEventDestroy(event_);
}

void CudaEvent::record(Stream& stream) { record(native_of(stream)); }
void CudaEvent::block(Stream& stream) { block(native_of(stream)); }

void CudaEvent::record(cudaStream_t stream) {
  CudaDeviceGuard guard(device_);
  KOLO_CUDA_CHECK(cudaEventRecord(event_, stream));
}

void CudaEvent::block(cudaStream_t stream) { KOLO_CUDA_CHECK(cudaStreamWaitEvent(stream, event_, 0)); }

bool CudaEvent::query() {
  const cudaError_t st = cudaEventQuery(event_);
  if (st == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return false;
  }
  KOLO_CUDA_CHECK(st);
  return true;
}

void CudaEvent::synchronize() { KOLO_CUDA_CHECK(cudaEventSynchronize(event_)); }

float CudaEvent::elapsed_ms(const CudaEvent& start) const {
  float ms = 0.0f;
  KOLO_CUDA_CHECK(cudaEventElapsedTime(&ms, start.event_, event_));
  return ms;
}

double CudaEvent::elapsed_ms(const Event& start) const {
  const auto* s = dynamic_cast<const CudaEvent*>(&start);
  KOLO_CHECK(s != nullptr, "Event::elapsed_ms: start event is not a CUDA event");
  return elapsed_ms(*s);
}

CudaStream& current_cuda_stream(int device) {
  CudaStream* s = tls_slot(device);
  return s ? *s : cuda_main_stream(device);
}

CudaStreamGuard::CudaStreamGuard(CudaStream& stream) : device_(stream.device().index) {
  CudaStream*& slot = tls_slot(device_);
  previous_ = slot;
  slot = &stream;
}

CudaStreamGuard::~CudaStreamGuard() { tls_slot(device_) = previous_; }

CudaDeviceGuard::CudaDeviceGuard(int device) {
  int current = 0;
  KOLO_CUDA_CHECK(cudaGetDevice(&current));
  if (current != device) {
    KOLO_CUDA_CHECK(cudaSetDevice(device));
    previous_ = current;
  }
}

CudaDeviceGuard::~CudaDeviceGuard() {
  if (previous_ >= 0) (void)cudaSetDevice(previous_);
}

}  // namespace kolo
