// Registry and host side of the deferred device-side input checks.
#include "core/device/cuda/deferred_errors.h"

#include <cuda_runtime_api.h>

#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include "core/device/cuda/cuda_check.h"
#include "core/device/cuda/cuda_stream.h"
#include "core/util/error.h"

namespace kolo::cuda {
namespace {

struct Registry {
  std::mutex mu;
  std::map<std::pair<std::string, int>, std::unique_ptr<DeferredCheck>> checks;
};

Registry& registry() {
  static Registry* r = new Registry;  // leaked: checks are used until process exit
  return *r;
}

}  // namespace

DeferredCheck::DeferredCheck(const char* site, int device) : site_(site), device_(device) {
  CudaDeviceGuard guard(device);
  KOLO_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&host_), sizeof(int), cudaHostAllocMapped));
  *host_ = 0;
  KOLO_CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&device_ptr_), host_, 0));
}

DeferredCheck& DeferredCheck::get(const char* site, int device) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto& slot = r.checks[{site, device}];
  if (!slot) slot.reset(new DeferredCheck(site, device));
  return *slot;
}

int* DeferredCheck::arm(std::string context) {
  raise_if_set();
  context_ = std::move(context);
  return device_ptr_;
}

void DeferredCheck::raise_if_set() {
  const int n = *static_cast<volatile int*>(host_);
  if (n == 0) return;
  *static_cast<volatile int*>(host_) = 0;
  KOLO_FAIL(context_, " (", n, " found by the kernel on cuda:", device_,
            ", reported at the next host synchronisation)");
}

void raise_deferred_errors(int device) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  for (auto& [key, check] : r.checks)
    if (key.second == device) check->raise_if_set();
}

}  // namespace kolo::cuda
