// CPU backend: work runs on the calling thread, so streams and events are already complete.
#include "core/device/cpu_backend.h"

#include <chrono>
#include <cstring>

#include "core/util/error.h"

namespace kolo {
namespace {

class CpuStream final : public Stream {
 public:
  Device device() const override { return Device::cpu(); }
  void synchronize() override {}
  void* native() const override { return nullptr; }
};

// CPU work is synchronous, so an event completes when recorded; it keeps the time for elapsed_ms.
class CpuEvent final : public Event {
 public:
  void record(Stream&) override { at_ = std::chrono::steady_clock::now(); }
  void block(Stream&) override {}
  bool query() override { return true; }
  void synchronize() override {}
  double elapsed_ms(const Event& start) const override {
    const auto* s = dynamic_cast<const CpuEvent*>(&start);
    KOLO_CHECK(s != nullptr, "Event::elapsed_ms: start event is not a CPU event");
    return std::chrono::duration<double, std::milli>(at_ - s->at_).count();
  }

 private:
  std::chrono::steady_clock::time_point at_{};
};

class CpuBackend final : public DeviceBackend {
 public:
  DeviceType type() const override { return DeviceType::CPU; }
  int device_count() const override { return 1; }
  Allocator& allocator(int) override { return allocator_; }
  Stream& current_stream(int) override { return stream_; }
  std::unique_ptr<Event> create_event(int, bool) override { return std::make_unique<CpuEvent>(); }
  void copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) override {
    KOLO_CHECK(dst_device.is_cpu() && src_device.is_cpu(), "CPU backend cannot copy ", src_device.str(),
               " -> ", dst_device.str());
    if (bytes) std::memmove(dst, src, bytes);
  }
  void synchronize(int) override {}

 private:
  CpuPoolAllocator allocator_;
  CpuStream stream_;
};

}  // namespace

DeviceBackend& cpu_device_backend() {
  // Leaked on purpose, like the CUDA backend: tensors in static storage, and a collectives thread left
  // running after a fault, may free memory while exit handlers run; the allocator must outlive them.
  static CpuBackend* backend = new CpuBackend;
  return *backend;
}

}  // namespace kolo
