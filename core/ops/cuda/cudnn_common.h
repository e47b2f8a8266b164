// cuDNN glue shared by the convolution, batch norm and pooling kernels: one handle per device (bound to the
// caller's stream on every use), RAII descriptors, and the kolo dtype -> cuDNN data type mapping.
#pragma once

#include <cudnn.h>

#include <cstdint>

#include "core/tensor/dtype.h"

namespace kolo::cuda {

// The device's cuDNN handle, set to `stream`. Handles are created once per device and live for the process.
cudnnHandle_t cudnn_handle(int device, cudaStream_t stream);

cudnnDataType_t cudnn_dtype(DType t, const char* op);

// 4-D activation descriptor for [n, c, h, w] logical dims stored NCHW or NHWC.
class TensorDesc {
 public:
  TensorDesc(DType t, int64_t n, int64_t c, int64_t h, int64_t w, bool nhwc, const char* op);
  ~TensorDesc();
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
  cudnnTensorDescriptor_t get() const { return d_; }

 private:
  cudnnTensorDescriptor_t d_ = nullptr;
};

// Filter [o, c, kh, kw] stored OIHW (or OHWI when nhwc).
class FilterDesc {
 public:
  FilterDesc(DType t, int64_t o, int64_t c, int64_t kh, int64_t kw, bool nhwc, const char* op);
  ~FilterDesc();
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
  cudnnFilterDescriptor_t get() const { return d_; }

 private:
  cudnnFilterDescriptor_t d_ = nullptr;
};

// alpha/beta scalars: double for f64 data, float otherwise (cuDNN's rule).
struct CudnnScalars {
  float f[2] = {1.0f, 0.0f};
  double d[2] = {1.0, 0.0};
  bool f64;
  explicit CudnnScalars(DType t) : f64(t == DType::F64) {}
  const void* one() const { return f64 ? static_cast<const void*>(&d[0]) : &f[0]; }
  const void* zero() const { return f64 ? static_cast<const void*>(&d[1]) : &f[1]; }
};

// Narrows a dimension to cuDNN's int, naming the op when it does not fit.
int cudnn_dim(int64_t v, const char* op);

}  // namespace kolo::cuda
