// cuDNN handles per device and descriptor wrappers (see cudnn_common.h).
#include "core/ops/cuda/cudnn_common.h"

#include <array>
#include <limits>
#include <mutex>

#include "core/device/cuda/cuda_check.h"

namespace kolo::cuda {

cudnnHandle_t cudnn_handle(int device, cudaStream_t stream) {
  static std::mutex mu;
  static std::array<cudnnHandle_t, 64> handles{};
  KOLO_CHECK(device >= 0 && device < static_cast<int>(handles.size()), "cuDNN: device index ", device,
             " out of range");
  cudnnHandle_t h;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!handles[static_cast<size_t>(device)]) KOLO_CUDNN_CHECK(cudnnCreate(&handles[static_cast<size_t>(device)]));
    h = handles[static_cast<size_t>(device)];
  }
  KOLO_CUDNN_CHECK(cudnnSetStream(h, stream));
  return h;
}

cudnnDataType_t cudnn_dtype(DType t, const char* op) {
  switch (t) {
    case DType::F32: return CUDNN_DATA_FLOAT;
    case DType::F64: return CUDNN_DATA_DOUBLE;
    case DType::BF16: return CUDNN_DATA_BFLOAT16;
    case DType::F16: return CUDNN_DATA_HALF;
    default: KOLO_FAIL(op, " on CUDA needs a floating dtype, got ", dtype_name(t));
  }
}

int cudnn_dim(int64_t v, const char* op) {
  KOLO_CHECK(v >= 0 && v <= std::numeric_limits<int>::max(), op, ": dimension ", v, " exceeds cuDNN's int range");
  return static_cast<int>(v);
}

TensorDesc::TensorDesc(DType t, int64_t n, int64_t c, int64_t h, int64_t w, bool nhwc, const char* op) {
  KOLO_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d_));
  KOLO_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d_, nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW, cudnn_dtype(t, op),
                                              cudnn_dim(n, op), cudnn_dim(c, op), cudnn_dim(h, op),
                                              cudnn_dim(w, op)));
}

TensorDesc::~TensorDesc() { cudnnDestroyTensorDescriptor(d_); }

FilterDesc::FilterDesc(DType t, int64_t o, int64_t c, int64_t kh, int64_t kw, bool nhwc, const char* op) {
  KOLO_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d_));
  KOLO_CUDNN_CHECK(cudnnSetFilter4dDescriptor(d_, cudnn_dtype(t, op), nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW,
                                              cudnn_dim(o, op), cudnn_dim(c, op), cudnn_dim(kh, op),
                                              cudnn_dim(kw, op)));
}

FilterDesc::~FilterDesc() { cudnnDestroyFilterDescriptor(d_); }

}  // namespace kolo::cuda
