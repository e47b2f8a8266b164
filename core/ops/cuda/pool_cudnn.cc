// CUDA 2-D max / average pooling through cuDNN (average excludes padding from the divisor, as the CPU
// kernel), except channels-last max pooling, which runs kolo's kernels (pool_nhwc.cu) and keeps the argmax as
// its workspace. cuDNN's max-pooling backward recomputes the argmax from x and y, so it keeps none.
#include "core/device/cuda/cuda_check.h"
#include "core/ops/cuda/cuda_tensor.h"
#include "core/ops/cuda/cudnn_common.h"
#include "core/ops/cuda/pool_nhwc_launch.h"
#include "core/ops/kernels/conv.h"

namespace kolo {
namespace {

cuda::MaxPoolNhwcShape nhwc_shape(const PoolGeometry& g) {
  auto i = [](int64_t v) { return static_cast<int>(v); };
  return {g.n, g.h, g.w, g.c, g.oh, g.ow, i(g.kernel[0]), i(g.kernel[1]), i(g.stride[0]), i(g.stride[1]),
          i(g.padding[0]), i(g.padding[1])};
}

bool use_own_max_pool(PoolKind kind, const PoolGeometry& g, DType t) {
  return kind == PoolKind::Max && g.channels_last && cuda::max_pool_nhwc_supported(t, nhwc_shape(g));
}

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

void cuda_pool2d_fwd(PoolKind kind, const PoolGeometry& g, const Tensor& x, Tensor& y, bool need_workspace,
                     Tensor& workspace) {
  const char* op = kind == PoolKind::Max ? "max_pool2d" : "avg_pool2d";
  cuda::KernelContext ctx(op, {&x, &y});
  workspace = Tensor();
  if (use_own_max_pool(kind, g, x.dtype())) {
    if (need_workspace) workspace = Tensor::empty(y.shape(), DType::U8, y.device());
    cuda::launch_max_pool_nhwc_forward(x.dtype(), nhwc_shape(g), x.data_ptr(), y.data_ptr(),
                                       need_workspace ? workspace.data<uint8_t>() : nullptr, ctx.stream());
    return;
  }
  cudnnHandle_t h = cuda::cudnn_handle(ctx.device(), ctx.stream());
  PoolDesc pd(kind, g, op);
  cuda::TensorDesc xd(x.dtype(), g.n, g.c, g.h, g.w, g.channels_last, op);
  cuda::TensorDesc yd(x.dtype(), g.n, g.c, g.oh, g.ow, g.channels_last, op);
  const cuda::CudnnScalars s(x.dtype());
  KOLO_CUDNN_CHECK(cudnnPoolingForward(h, pd.get(), s.one(), xd.get(), x.data_ptr(), s.zero(), yd.get(),
                                       y.data_ptr()));
}

void cuda_pool2d_bwd(PoolKind kind, const PoolGeometry& g, const Tensor& x, const Tensor& y, const Tensor& dy,
                     const Tensor& workspace, Tensor& dx) {
  const char* op = kind == PoolKind::Max ? "max_pool2d backward" : "avg_pool2d backward";
  cuda::KernelContext ctx(op, {&x, &y, &dy, &dx});
  if (workspace.defined() && use_own_max_pool(kind, g, x.dtype())) {
    KOLO_CHECK(workspace.dtype() == DType::U8 && workspace.shape() == dy.shape(), op, ": argmax workspace ",
               workspace.describe(), " does not match the output gradient ", dy.describe());
    cuda::launch_max_pool_nhwc_backward(x.dtype(), nhwc_shape(g), dy.data_ptr(), workspace.data<uint8_t>(),
                                        dx.data_ptr(), ctx.stream());
    return;
  }
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
