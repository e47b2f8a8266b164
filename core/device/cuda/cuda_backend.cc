// The CUDA device backend: discovery, per-device allocators and main streams (created on first use), copies.
#include "core/device/cuda/cuda_backend.h"

#include <memory>
#include <mutex>
#include <vector>

#include "core/device/cuda/cuda_check.h"
#include "core/device/cuda/cuda_graph.h"
#include "core/device/cuda/deferred_errors.h"
#include "core/util/env.h"

namespace kolo {

namespace {

class CudaBackend final : public DeviceBackend {
 public:
  explicit CudaBackend(int count) : devices_(count) {}

  DeviceType type() const override { return DeviceType::CUDA; }
  int device_count() const override { return static_cast<int>(devices_.size()); }

  CudaCachingAllocator& device_allocator(int index) { return *state(index).allocator; }
  Allocator& allocator(int index) override { return device_allocator(index); }
  CudaStream& main_stream(int index) { return *state(index).stream; }
  Stream& current_stream(int index) override { return current_cuda_stream(index); }
  std::unique_ptr<Event> create_event(int index, bool timing) override {
    check_index(index);
    return std::make_unique<CudaEvent>(index, timing);
  }
  std::unique_ptr<Graph> create_graph(int index) override {
    check_index(index);
    return std::make_unique<CudaGraph>(index);
  }

  CudaCachingAllocator& pinned() {
    std::call_once(pinned_once_, [&] {
      pinned_ = std::make_unique<CudaCachingAllocator>(CudaCachingAllocator::Kind::PinnedHost, cuda_current_device());
    });
    return *pinned_;
  }

  void copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) override {
    if (bytes == 0) return;
    if (dst_device.is_cuda() && src_device.is_cuda()) {
      if (dst_device.index == src_device.index) {
        CudaDeviceGuard guard(dst_device.index);
        KOLO_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice,
                                        current_cuda_stream_native(dst_device.index)));
        return;
      }
      // Peer copy on the destination's stream, after the work already queued on the source's stream.
      CudaEvent ready(src_device.index);
      ready.record(current_cuda_stream_native(src_device.index));
      cudaStream_t s = current_cuda_stream_native(dst_device.index);
      ready.block(s);
      CudaDeviceGuard guard(dst_device.index);
      KOLO_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_device.index, src, src_device.index, bytes, s));
      return;
    }
    if (dst_device.is_cuda()) {
      // Host to device. From pageable memory the call returns once the source has been staged, so the
      // caller may free it; from our pinned pool the copy is truly asynchronous, so the block is kept
      // out of reuse until the copy has run.
      const int d = dst_device.index;
      CudaDeviceGuard guard(d);
      cudaStream_t s = current_cuda_stream_native(d);
      KOLO_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
      if (pinned_ && pinned_->owns(src)) pinned_->record_stream(const_cast<void*>(src), s);
      return;
    }
    KOLO_CHECK(src_device.is_cuda(), "CUDA backend asked to copy ", src_device.str(), " -> ", dst_device.str());
    // Device to host: the caller reads the result right away, so wait for it.
    const int d = src_device.index;
    CudaDeviceGuard guard(d);
    cudaStream_t s = current_cuda_stream_native(d);
    KOLO_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
    KOLO_CUDA_CHECK(cudaStreamSynchronize(s));
    cuda::raise_deferred_errors(d);
  }

  void synchronize(int index) override {
    check_index(index);
    CudaDeviceGuard guard(index);
    KOLO_CUDA_CHECK(cudaDeviceSynchronize());
    cuda::raise_deferred_errors(index);
  }

 private:
  struct PerDevice {
    std::once_flag once;
    std::unique_ptr<CudaCachingAllocator> allocator;
    std::unique_ptr<CudaStream> stream;
  };

  void check_index(int index) const {
    KOLO_CHECK(index >= 0 && index < static_cast<int>(devices_.size()), "cuda:", index, " does not exist (",
               devices_.size(), " visible CUDA devices; CUDA_VISIBLE_DEVICES selects them)");
  }

  PerDevice& state(int index) {
    check_index(index);
    PerDevice& d = devices_[index];
    std::call_once(d.once, [&] {
      d.allocator = std::make_unique<CudaCachingAllocator>(CudaCachingAllocator::Kind::Device, index);
      if (auto limit = env::get("KOLO_CUDA_MEMORY_LIMIT"))
        d.allocator->set_limit(CudaCachingAllocator::parse_bytes(*limit, "KOLO_CUDA_MEMORY_LIMIT"));
      d.stream = CudaStream::create(index);
    });
    return d;
  }

  std::vector<PerDevice> devices_;
  std::once_flag pinned_once_;
  std::unique_ptr<CudaCachingAllocator> pinned_;
};

CudaBackend& backend() {
  KOLO_CHECK(cuda_device_count() > 0, "CUDA requested but no CUDA device is visible");
  // Leaked on purpose: tensors held in static storage elsewhere may be freed after this would be destroyed.
  static CudaBackend* instance = new CudaBackend(cuda_device_count());
  return *instance;
}

}  // namespace

int cuda_device_count() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      (void)cudaGetLastError();  // no driver or no device: a CPU-only run, not an error
      return 0;
    }
    return n;
  }();
  return count;
}

DeviceBackend& cuda_device_backend() { return backend(); }

int cuda_current_device() {
  int d = 0;
  KOLO_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

void cuda_set_device(int device) {
  const int n = cuda_device_count();
  KOLO_CHECK(device >= 0 && device < n, "cuda_set_device(", device, "): ", n,
             " visible CUDA devices (CUDA_VISIBLE_DEVICES selects them)");
  KOLO_CUDA_CHECK(cudaSetDevice(device));
}

CudaStream& cuda_main_stream(int device) { return backend().main_stream(device); }
CudaCachingAllocator& cuda_device_allocator(int device) { return backend().device_allocator(device); }
CudaCachingAllocator& cuda_pinned_allocator() { return backend().pinned(); }

}  // namespace kolo
