// The one place that knows which device backends were built in.
#include "core/device/device_backend.h"

#include "core/device/cpu_backend.h"
#include "core/util/error.h"

#ifdef KOLO_WITH_CUDA
#include "core/device/cuda/cuda_backend.h"
#endif

namespace kolo {

std::unique_ptr<Graph> DeviceBackend::create_graph(int index) {
  KOLO_FAIL("device graphs are a CUDA feature; ", Device{type(), index}.str(), " has none");
}

bool device_available(DeviceType type) {
  if (type == DeviceType::CPU) return true;
#ifdef KOLO_WITH_CUDA
  return cuda_device_count() > 0;
#else
  return false;
#endif
}

DeviceBackend& device_backend(DeviceType type) {
  if (type == DeviceType::CPU) return cpu_device_backend();
#ifdef KOLO_WITH_CUDA
  KOLO_CHECK(cuda_device_count() > 0, "CUDA requested but no CUDA device is visible");
  return cuda_device_backend();
#else
  KOLO_FAIL("CUDA requested but kolo was built without CUDA (KOLO_WITH_CUDA=OFF)");
#endif
}

Device default_device() { return device_available(DeviceType::CUDA) ? Device::cuda(0) : Device::cpu(); }

Device parse_device(const std::string& text) {
  if (text == "cpu") return Device::cpu();
  if (text == "cuda" || text == "gpu") return Device::cuda(0);
  if (text.rfind("cuda:", 0) == 0) {
    const std::string idx = text.substr(5);
    KOLO_CHECK(!idx.empty() && idx.size() < 4 && idx.find_first_not_of("0123456789") == std::string::npos,
               "bad device '", text, "' (expected cpu, cuda or cuda:N)");
    return Device::cuda(std::stoi(idx));
  }
  KOLO_FAIL("bad device '", text, "' (expected cpu, cuda or cuda:N)");
}

}  // namespace kolo
