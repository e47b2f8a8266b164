// Kernel context and scratch memory for the CUDA op glue.
#include "core/ops/cuda/cuda_tensor.h"

#include "core/device/cuda/cuda_backend.h"

namespace kolo::cuda {

namespace {
int device_of(const char* op, std::initializer_list<const Tensor*> tensors) {
  KOLO_CHECK(tensors.size() > 0, op, ": no operands");
  const Tensor* first = *tensors.begin();
  for (const Tensor* t : tensors) {
    KOLO_CHECK(t->defined() && !t->is_sparse(), op, ": CUDA kernels take dense tensors, got ",
               t->defined() ? t->describe() : std::string("an undefined tensor"));
    KOLO_CHECK(t->device().is_cuda() && t->device() == first->device(), op, ": operands on different devices (",
               first->describe(), ", ", t->describe(), ")");
  }
  return first->device().index;
}
}  // namespace

KernelContext::KernelContext(const char* op, std::initializer_list<const Tensor*> tensors)
    : device_(device_of(op, tensors)), guard_(device_), stream_(current_cuda_stream_native(device_)) {}

DeviceScratch::DeviceScratch(int device, size_t bytes)
    : device_(device), bytes_(bytes), ptr_(cuda_device_allocator(device).allocate(bytes)) {}

DeviceScratch::~DeviceScratch() { cuda_device_allocator(device_).deallocate(ptr_, bytes_); }

}  // namespace kolo::cuda
