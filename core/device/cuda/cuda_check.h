// Check macros for CUDA runtime, cuBLAS(Lt) and cuDNN calls: a failure throws kolo::Error naming the call,
// the library's error string and the call site (file:line, and the rank once collectives set it).
#pragma once

#include <cuda_runtime_api.h>

#include "core/util/error.h"

namespace kolo::cuda_detail {

const char* cublas_status_name(int status);
const char* cudnn_status_name(int status);

}  // namespace kolo::cuda_detail

#define KOLO_CUDA_CHECK(call)                                                                   \
  do {                                                                                          \
    const cudaError_t kolo_cuda_err_ = (call);                                                  \
    if (kolo_cuda_err_ != cudaSuccess) {                                                        \
      (void)cudaGetLastError(); /* clear a sticky-free error so the next call starts clean */   \
      KOLO_FAIL("CUDA error ", cudaGetErrorName(kolo_cuda_err_), " (", cudaGetErrorString(kolo_cuda_err_), \
                ") in ", #call);                                                                \
    }                                                                                           \
  } while (0)

// After a kernel launch: catches bad launch configurations right where they happen.
#define KOLO_CUDA_CHECK_LAUNCH() KOLO_CUDA_CHECK(cudaGetLastError())

#define KOLO_CUBLAS_CHECK(call)                                                                 \
  do {                                                                                          \
    const int kolo_cublas_st_ = static_cast<int>(call);                                         \
    if (kolo_cublas_st_ != 0)                                                                   \
      KOLO_FAIL("cuBLAS error ", ::kolo::cuda_detail::cublas_status_name(kolo_cublas_st_), " (", \
                kolo_cublas_st_, ") in ", #call);                                               \
  } while (0)

#define KOLO_CUDNN_CHECK(call)                                                                  \
  do {                                                                                          \
    const int kolo_cudnn_st_ = static_cast<int>(call);                                          \
    if (kolo_cudnn_st_ != 0)                                                                    \
      KOLO_FAIL("cuDNN error ", ::kolo::cuda_detail::cudnn_status_name(kolo_cudnn_st_), " (",    \
                kolo_cudnn_st_, ") in ", #call);                                                \
  } while (0)
