// CUDA 2-D max / average pooling through cuDNN (average excludes padding from the divisor, as the CPU
// kernel). cuDNN's max-pooling backward recomputes the argmax from x and y, so no workspace is kept.
#include "core/device/cuda/cuda_check.h"
#include "core/ops/cuda/cuda_tensor.h"
#include "core/ops/cuda/cudnn_common.h"
#include "core/ops/kernels/conv.h"

namespace kolo {
namespace {

class PoolDesc {
 public:
  PoolDesc(PoolKind kind, const PoolGeometry& g, const char* op) {
    KOLO_CUDNN_CHECK(cudnnCreatePoolingDescriptor(&d_));
    KOLO_CUDNN_CHECK(cudnnSetPooling2dDescriptor(
        d_, kind == PoolKind::Max ? CUDNN_POOLING_MAX : CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING,
        CUDNN_PROPAGATE_NAN, cuda::cudnn_dim(g.kernel[0], op), cuda::cudnn_dim(g.kernel[1], op),
        cuda::cudnn_dim(g.padding[0], op), cuda::cudnn_dim(g.padding[1], op), cuda::cudnn_dim(g.stride[0], op),
        cuda::cudnn_dim(g.stride[1], op)));
  }
  ~PoolDesc() { cudnnDestroyPoolingDescriptor(d_); }
  PoolDesc(const PoolDesc&) = delete;
  PoolDesc& operator=(const PoolDesc&) = delete;
  cudnnPoolingDescriptor_t get() const { return d_; }

 private:
  cudnnPoolingDescriptor_t d_ = nullptr;
};

void cuda_pool2d_fwd(PoolKind kind, const PoolGeometry& g, const Tensor& x, Tensor& y, bool, Tensor& workspace) {
  const char* op = kind == PoolKind::Max ? "max_pool2d" : "avg_pool2d";
  cuda::KernelContext ctx(op, {&x, &y});
  workspace = Tensor();
  cudnnHandle_t h = cuda::cudnn_handle(ctx.device(), ctx.stream());
  PoolDesc pd(kind, g, op);
  cuda::TensorDesc xd(x.dtype(), g.n, g.c, g.h, g.w, g.channels_last, op);
  cuda::TensorDesc yd(x.dtype(), g.n, g.c, g.oh, g.ow, g.channels_last, op);
  const cuda::CudnnScalars s(x.dtype());
  KOLO_CUDNN_CHECK(cudnnPoolingForward(h, pd.get(), s.one(), xd.get(), x.data_ptr(), s.zero(), yd.get(),
                                       y.data_ptr()));
}

void cuda_pool2d_bwd(PoolKind kind, const PoolGeometry& g, const Tensor& x, const Tensor& y, const Tensor& dy,
                     const Tensor&, Tensor& dx) {
  const char* op = kind == PoolKind::Max ? "max_pool2d backward" : "avg_pool2d backward";
  cuda::KernelContext ctx(op, {&x, &y, &dy, &dx});
  cudnnHandle_t h = cuda::cudnn_handle(ctx.device(), ctx.stream());
  PoolDesc pd(kind, g, op);
  cuda::TensorDesc xd(x.dtype(), g.n, g.c, g.h, g.w, g.channels_last, op);
  cuda::TensorDesc yd(x.dtype(), g.n, g.c, g.oh, g.ow, g.channels_last, op);
  const cuda::CudnnScalars s(x.dtype());
  KOLO_CUDNN_CHECK(cudnnPoolingBackward(h, pd.get(), s.one(), yd.get(), y.data_ptr(), yd.get(), dy.data_ptr(),
                                        xd.get(), x.data_ptr(), s.zero(), xd.get(), dx.data_ptr()));
}

}  // namespace

KOLO_REGISTER_KERNEL(pool2d_fwd, CUDA, cuda_pool2d_fwd);
KOLO_REGISTER_KERNEL(pool2d_bwd, CUDA, cuda_pool2d_bwd);

}  // namespace kolo
