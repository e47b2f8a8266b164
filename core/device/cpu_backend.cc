// CPU backend: work runs on the calling thread, so streams and events are already complete.
#include "core/device/cpu_backend.h"

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

class CpuEvent final : public Event {
 public:
  void record(Stream&) override {}
  void block(Stream&) override {}
  bool query() override { return true; }
  void synchronize() override {}
};

class CpuBackend final : public DeviceBackend {
 public:
  DeviceType type() const override { return DeviceType::CPU; }
  int device_count() const override { return 1; }
  Allocator& allocator(int) override { return allocator_; }
  Stream& current_stream(int) override { return stream_; }
  std::unique_ptr<Event> create_event(int) override { return std::make_unique<CpuEvent>(); }
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
  static CpuBackend backend;
  return backend;
}

}  // namespace kolo
