// Names of cuBLAS and cuDNN status codes for error messages.
#include "core/device/cuda/cuda_check.h"

#include <cublas_api.h>
#include <cudnn.h>

namespace kolo::cuda_detail {

const char* cublas_status_name(int status) { return cublasGetStatusName(static_cast<cublasStatus_t>(status)); }

const char* cudnn_status_name(int status) { return cudnnGetErrorString(static_cast<cudnnStatus_t>(status)); }

}  // namespace kolo::cuda_detail
