// Glue between Tensors and the CUDA launchers: device guard, current stream, checks and layouts.
#pragma once

#include <cuda_runtime_api.h>

#include <array>

#include "core/device/cuda/cuda_stream.h"
#include "core/ops/cuda/strided_indexer.h"
#include "core/tensor/tensor.h"

namespace kolo::cuda {

// Checks that every tensor is dense and on `device` (naming `op`), makes it current, and yields its stream.
class KernelContext {
 public:
  KernelContext(const char* op, std::initializer_list<const Tensor*> tensors);
  cudaStream_t stream() const { return stream_; }
  int device() const { return device_; }

 private:
  int device_;
  CudaDeviceGuard guard_;
  cudaStream_t stream_;
};

template <int N>
StridedIndexer<N> indexer_of(const Shape& shape, const std::array<const Tensor*, N>& ts) {
  std::array<const Shape*, N> strides;
  for (int k = 0; k < N; ++k) strides[k] = &ts[k]->strides();
  return make_indexer<N>(shape, strides);
}

// Scratch device memory from the caching allocator, returned to it on scope exit.
class DeviceScratch {
 public:
  DeviceScratch(int device, size_t bytes);
  ~DeviceScratch();
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;
  void* get() const { return ptr_; }

 private:
  int device_;
  size_t bytes_;
  void* ptr_;
};

// Raw pointers of optional operands: nullptr for an undefined tensor (kernels take null as "absent").
inline const void* ptr_or_null(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }
inline void* mut_ptr_or_null(Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

}  // namespace kolo::cuda
