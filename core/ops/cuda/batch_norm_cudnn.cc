// CUDA batch norm. Training on channels-last f32/bf16/f16 runs kolo's own kernels (bn_nhwc.cu: cuDNN's
// legacy NHWC path took ~90% of a ResNet-50 step). Other training cases run cuDNN's fused forward-training
// and backward kernels, which keep scale/bias/statistics in f32 (f64 for f64 data), so half-precision
// parameters and running statistics are converted around the call. Eval mode (running statistics, constant in
// the backward) has no cuDNN backward, so both directions use kolo's per-channel kernels (channel.cu).
#include "core/autograd/grad_mode.h"
#include "core/device/cuda/cuda_check.h"
#include "core/ops/cuda/bn_nhwc_launch.h"
#include "core/ops/cuda/channel_launch.h"
#include "core/ops/cuda/cuda_tensor.h"
#include "core/ops/cuda/cudnn_common.h"
#include "core/ops/kernels/basic.h"
#include "core/ops/kernels/batch_norm_act.h"
#include "core/ops/kernels/conv.h"
#include "core/ops/kernels/elementwise.h"

namespace kolo {
namespace {

DType stat_dtype(DType t) { return t == DType::F64 ? DType::F64 : DType::F32; }

// x viewed as [outer, c, inner] (see channel_launch.h) and as a cuDNN 4-D descriptor of the same layout.
struct BnLayout {
  cuda::ChannelView v;
  int64_t n, c, h;
  bool nhwc;
};

BnLayout layout_of(const Tensor& x, bool channels_last, const char* op) {
  KOLO_CHECK(x.dim() >= 2, op, ": input must have a batch and a channel dim, got ", x.describe());
  if (channels_last) {
    const int64_t c = x.size(-1), outer = c ? x.numel() / c : 0;
    return {{outer, c, 1}, outer, c, 1, true};
  }
  const int64_t n = x.size(0), c = x.size(1), inner = n * c != 0 ? x.numel() / (n * c) : 0;
  return {{n, c, inner}, n, c, inner, false};
}

// `t` as a contiguous tensor of dtype `d` (t itself when it already is); `fill` when t is undefined.
Tensor as_stat(const Tensor& t, DType d, int64_t c, double fill, Device dev) {
  NoGradGuard ng;
  if (!t.defined()) return fill == 0.0 ? Tensor::zeros({c}, d, dev) : Tensor::ones({c}, d, dev);
  return t.dtype() == d && t.is_contiguous() ? t : t.to(d).contiguous();
}

cudnnBatchNormMode_t bn_mode(DType t, bool nhwc) {
  // The persistent kernels are cuDNN's fast path for half-precision NHWC.
  return nhwc && (t == DType::BF16 || t == DType::F16) ? CUDNN_BATCHNORM_SPATIAL_PERSISTENT
                                                       : CUDNN_BATCHNORM_SPATIAL;
}

// kolo's channels-last kernels take data in f32/bf16/f16 with parameters and running statistics in f32 or
// the data's dtype.
bool use_nhwc_kernels(const Tensor& x, bool channels_last, std::initializer_list<const Tensor*> params) {
  if (!channels_last || x.dtype() == DType::F64) return false;
  for (const Tensor* p : params)
    if (p->defined() && ((p->dtype() != x.dtype() && p->dtype() != DType::F32) || !p->is_contiguous())) return false;
  return true;
}

DType dtype_or(const Tensor& t, DType d) { return t.defined() ? t.dtype() : d; }

// Training forward y = [relu](bn(x) [+ residual]) on kolo's channels-last kernels. Returns false, having done
// nothing, where they do not apply (layout, dtypes), so the caller takes another path.
bool try_nhwc_forward(const cuda::KernelContext& ctx, const char* op, const BnLayout& l, const Tensor& x,
                      const Tensor& weight, const Tensor& bias, const Tensor& residual, bool relu,
                      Tensor& running_mean, Tensor& running_var, double momentum, double eps, bool channels_last,
                      Tensor& y, Tensor& save_mean, Tensor& save_invstd) {
  KOLO_CHECK(running_mean.defined() == running_var.defined(), op,
             ": running mean and variance must both be given or both be absent");
  if (!use_nhwc_kernels(x, channels_last, {&weight, &bias, &running_mean, &running_var, &residual}) ||
      dtype_or(weight, x.dtype()) != dtype_or(bias, dtype_or(weight, x.dtype())) ||
      dtype_or(running_mean, x.dtype()) != dtype_or(running_var, x.dtype()) ||
      dtype_or(residual, x.dtype()) != x.dtype())
    return false;
  const cuda::BnNhwcShape shape{l.n, l.c};
  cuda::DeviceScratch ws(ctx.device(), std::max<size_t>(cuda::bn_nhwc_workspace_bytes(shape), 16));
  cuda::launch_bn_nhwc_forward(x.dtype(), shape, x.data_ptr(), dtype_or(weight, dtype_or(bias, x.dtype())),
                               cuda::ptr_or_null(weight), cuda::ptr_or_null(bias), dtype_or(running_mean, x.dtype()),
                               cuda::mut_ptr_or_null(running_mean), cuda::mut_ptr_or_null(running_var), momentum,
                               eps, cuda::ptr_or_null(residual), relu, y.data_ptr(), save_mean.data<float>(),
                               save_invstd.data<float>(), ws.get(), ctx.stream());
  return true;
}

// Training backward of bn (y undefined), of relu(bn(x) [+ residual]) given its output y, or with relu_from_x
// of relu(bn(x)) with the mask recomputed from x and (weight, bias), on the channels-last kernels; false,
// having done nothing, where they do not apply.
bool try_nhwc_backward(const cuda::KernelContext& ctx, const BnLayout& l, const Tensor& dy, const Tensor& y,
                       bool relu_from_x, const Tensor& x, const Tensor& weight, const Tensor& bias,
                       const Tensor& save_mean, const Tensor& save_invstd, bool channels_last, Tensor& dx,
                       Tensor& dweight, Tensor& dbias, Tensor& dresidual) {
  const DType pt = dtype_or(weight, x.dtype());
  if (!use_nhwc_kernels(x, channels_last, {&weight, &bias}) || (dweight.defined() && dweight.dtype() != pt) ||
      (dbias.defined() && dbias.dtype() != pt) || (relu_from_x && dtype_or(bias, pt) != pt))
    return false;
  const cuda::BnNhwcShape shape{l.n, l.c};
  cuda::DeviceScratch ws(ctx.device(), std::max<size_t>(cuda::bn_nhwc_workspace_bytes(shape), 16));
  cuda::launch_bn_nhwc_backward(x.dtype(), shape, dy.data_ptr(), cuda::ptr_or_null(y), relu_from_x, x.data_ptr(), pt,
                                cuda::ptr_or_null(weight), relu_from_x ? cuda::ptr_or_null(bias) : nullptr,
                                save_mean.data<float>(), save_invstd.data<float>(),
                                cuda::mut_ptr_or_null(dx), cuda::mut_ptr_or_null(dweight),
                                cuda::mut_ptr_or_null(dbias), cuda::mut_ptr_or_null(dresidual), ws.get(),
                                ctx.stream());
  return true;
}

class BnParamDesc {
 public:
  BnParamDesc(cudnnTensorDescriptor_t x, cudnnBatchNormMode_t mode) {
    KOLO_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d_));
    KOLO_CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(d_, x, mode));
  }
  ~BnParamDesc() { cudnnDestroyTensorDescriptor(d_); }
  BnParamDesc(const BnParamDesc&) = delete;
  BnParamDesc& operator=(const BnParamDesc&) = delete;
  cudnnTensorDescriptor_t get() const { return d_; }

 private:
  cudnnTensorDescriptor_t d_ = nullptr;
};

void cuda_batch_norm_fwd(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& running_mean,
                         Tensor& running_var, bool training, double momentum, double eps, bool channels_last,
                         Tensor& y, Tensor& save_mean, Tensor& save_invstd) {
  const char* op = "batch_norm";
  cuda::KernelContext ctx(op, {&x, &y, &save_mean, &save_invstd});
  const BnLayout l = layout_of(x, channels_last, op);
  const DType st = stat_dtype(x.dtype());
  if (!training) {
    KOLO_CHECK(running_mean.defined() && running_var.defined(), op,
               ": eval mode needs running statistics for ", x.describe());
    cuda::launch_bn_stats_from_running(running_mean.dtype(), running_mean.data_ptr(), running_var.data_ptr(), eps,
                                       l.c, st, save_mean.data_ptr(), save_invstd.data_ptr(), ctx.stream());
    cuda::launch_bn_apply(x.dtype(), l.v, x.data_ptr(), weight.defined() ? weight.data_ptr() : nullptr,
                          bias.defined() ? bias.data_ptr() : nullptr, save_mean.data_ptr(), save_invstd.data_ptr(),
                          y.data_ptr(), ctx.stream());
    return;
  }
  KOLO_CHECK(eps >= CUDNN_BN_MIN_EPSILON, op, ": eps ", eps, " below cuDNN's minimum ", CUDNN_BN_MIN_EPSILON);
  if (try_nhwc_forward(ctx, op, l, x, weight, bias, Tensor(), false, running_mean, running_var, momentum, eps,
                       channels_last, y, save_mean, save_invstd))
    return;
  cudnnHandle_t h = cuda::cudnn_handle(ctx.device(), ctx.stream());
  cuda::TensorDesc xd(x.dtype(), l.n, l.c, l.h, 1, l.nhwc, op);
  const cudnnBatchNormMode_t mode = bn_mode(x.dtype(), l.nhwc);
  BnParamDesc pd(xd.get(), mode);
  const Tensor w = as_stat(weight, st, l.c, 1.0, x.device());
  const Tensor b = as_stat(bias, st, l.c, 0.0, x.device());
  Tensor rm, rv;
  if (running_mean.defined()) {
    rm = as_stat(running_mean, st, l.c, 0.0, x.device());
    rv = as_stat(running_var, st, l.c, 1.0, x.device());
  }
  const cuda::CudnnScalars s(x.dtype());
  KOLO_CUDNN_CHECK(cudnnBatchNormalizationForwardTraining(
      h, mode, s.one(), s.zero(), xd.get(), x.data_ptr(), xd.get(), y.data_ptr(), pd.get(), w.data_ptr(),
      b.data_ptr(), momentum, rm.defined() ? rm.data_ptr() : nullptr, rv.defined() ? rv.data_ptr() : nullptr, eps,
      save_mean.data_ptr(), save_invstd.data_ptr()));
  // Running statistics of another dtype were updated in an f32 copy: write them back.
  if (rm.defined() && rm.data_ptr() != running_mean.data_ptr()) copy_kernel()(x.device())(running_mean, rm);
  if (rv.defined() && rv.data_ptr() != running_var.data_ptr()) copy_kernel()(x.device())(running_var, rv);
}

void cuda_batch_norm_bwd(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& save_mean,
                         const Tensor& save_invstd, bool training, bool channels_last, Tensor& dx, Tensor& dweight,
                         Tensor& dbias) {
  const char* op = "batch_norm backward";
  cuda::KernelContext ctx(op, {&dy, &x, &save_mean, &save_invstd});
  const BnLayout l = layout_of(x, channels_last, op);
  const DType st = stat_dtype(x.dtype());
  const size_t acc = st == DType::F64 ? sizeof(double) : sizeof(float);
  if (!training) {
    if (dx.defined())
      cuda::launch_bn_eval_dx(x.dtype(), l.v, dy.data_ptr(), weight.defined() ? weight.data_ptr() : nullptr,
                              save_invstd.data_ptr(), dx.data_ptr(), ctx.stream());
    if (!dweight.defined() && !dbias.defined()) return;
    cuda::DeviceScratch sums(ctx.device(), std::max<size_t>(2 * static_cast<size_t>(l.c) * acc, 16));
    char* s_dy = static_cast<char*>(sums.get());
    char* s_dyx = s_dy + static_cast<size_t>(l.c) * acc;
    cuda::launch_channel_sums(x.dtype(), l.v, dy.data_ptr(), x.data_ptr(), save_mean.data_ptr(),
                              save_invstd.data_ptr(), s_dy, s_dyx, ctx.stream());
    if (dweight.defined()) cuda::launch_channel_store(dweight.dtype(), s_dyx, l.c, dweight.data_ptr(), ctx.stream());
    if (dbias.defined()) cuda::launch_channel_store(dbias.dtype(), s_dy, l.c, dbias.data_ptr(), ctx.stream());
    return;
  }
  Tensor no_residual;
  if (try_nhwc_backward(ctx, l, dy, Tensor(), false, x, weight, Tensor(), save_mean, save_invstd, channels_last, dx,
                        dweight, dbias, no_residual))
    return;
  cudnnHandle_t h = cuda::cudnn_handle(ctx.device(), ctx.stream());
  cuda::TensorDesc xd(x.dtype(), l.n, l.c, l.h, 1, l.nhwc, op);
  const cudnnBatchNormMode_t mode = bn_mode(x.dtype(), l.nhwc);
  BnParamDesc pd(xd.get(), mode);
  const Tensor w = as_stat(weight, st, l.c, 1.0, x.device());
  Tensor gx = dx.defined() ? dx : Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor gw = dweight.defined() && dweight.dtype() == st ? dweight : Tensor::empty({l.c}, st, x.device());
  Tensor gb = dbias.defined() && dbias.dtype() == st ? dbias : Tensor::empty({l.c}, st, x.device());
  const cuda::CudnnScalars s(x.dtype());
  KOLO_CUDNN_CHECK(cudnnBatchNormalizationBackward(
      h, mode, s.one(), s.zero(), s.one(), s.zero(), xd.get(), x.data_ptr(), xd.get(), dy.data_ptr(), xd.get(),
      gx.data_ptr(), pd.get(), w.data_ptr(), gw.data_ptr(), gb.data_ptr(), CUDNN_BN_MIN_EPSILON,
      save_mean.data_ptr(), save_invstd.data_ptr()));
  if (dweight.defined() && gw.data_ptr() != dweight.data_ptr())
    cuda::launch_channel_convert(dweight.dtype(), dweight.data_ptr(), st, gw.data_ptr(), l.c, ctx.stream());
  if (dbias.defined() && gb.data_ptr() != dbias.data_ptr())
    cuda::launch_channel_convert(dbias.dtype(), dbias.data_ptr(), st, gb.data_ptr(), l.c, ctx.stream());
}

// relu(bn(x) [+ residual]): one fused pass on the channels-last kernels, else batch norm then add and ReLU in place.
void cuda_batch_norm_act_fwd(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& residual,
                             Tensor& running_mean, Tensor& running_var, bool training, double momentum, double eps,
                             bool channels_last, Tensor& y, Tensor& save_mean, Tensor& save_invstd) {
  const char* op = "batch_norm_act";
  cuda::KernelContext ctx(op, {&x, &y, &save_mean, &save_invstd});
  if (training && try_nhwc_forward(ctx, op, layout_of(x, channels_last, op), x, weight, bias, residual, true,
                                   running_mean, running_var, momentum, eps, channels_last, y, save_mean, save_invstd))
    return;
  cuda_batch_norm_fwd(x, weight, bias, running_mean, running_var, training, momentum, eps, channels_last, y,
                      save_mean, save_invstd);
  if (residual.defined()) binary_kernel()(x.device())(BinaryOp::Add, y, residual, y);
  unary_kernel()(x.device())(UnaryOp::Relu, y, y);
}

void cuda_batch_norm_act_bwd(const Tensor& dy, const Tensor& y, const Tensor& x, const Tensor& weight,
                             const Tensor& bias, const Tensor& save_mean, const Tensor& save_invstd, bool training,
                             bool channels_last, bool with_residual, Tensor& dx, Tensor& dweight, Tensor& dbias,
                             Tensor& dresidual) {
  const char* op = "batch_norm_act backward";
  cuda::KernelContext ctx(op, {&dy, &y, &x, &save_mean, &save_invstd});
  // Without a residual the mask comes from x (already read for the gradients): y is not read at all.
  const bool from_x = !with_residual;
  if (training && try_nhwc_backward(ctx, layout_of(x, channels_last, op), dy, from_x ? Tensor() : y, from_x, x, weight,
                                    bias, save_mean, save_invstd, channels_last, dx, dweight, dbias, dresidual))
    return;
  // The ReLU mask from the output: y > 0 exactly where its input was > 0.
  Tensor dz = Tensor::empty(dy.shape(), dy.dtype(), dy.device());
  unary_backward_kernel()(x.device())(UnaryOp::Relu, dy, y, y, dz);
  if (dresidual.defined()) copy_kernel()(x.device())(dresidual, dz);
  cuda_batch_norm_bwd(dz, x, weight, save_mean, save_invstd, training, channels_last, dx, dweight, dbias);
}

// The dual form runs only on the channels-last kernels, with both norms' parameters in one dtype and their
// running statistics in one dtype; anything else composes (the op's fallback).
bool dual_applies(const Tensor& x, bool channels_last, const Tensor& w, const Tensor& b, const Tensor& rm,
                  const Tensor& rv, const Tensor& r, const Tensor& rw, const Tensor& rb, const Tensor& rrm,
                  const Tensor& rrv) {
  if (!use_nhwc_kernels(x, channels_last, {&w, &b, &rm, &rv, &r, &rw, &rb, &rrm, &rrv})) return false;
  const DType pt = dtype_or(w, x.dtype()), st = dtype_or(rm, x.dtype());
  for (const Tensor* t : {&b, &rw, &rb})
    if (dtype_or(*t, pt) != pt) return false;
  for (const Tensor* t : {&rv, &rrm, &rrv})
    if (dtype_or(*t, st) != st) return false;
  return rm.defined() == rv.defined() && rrm.defined() == rrv.defined() && rm.defined() == rrm.defined() &&
         r.dtype() == x.dtype();
}

cuda::BnNhwcParams nhwc_params(DType pt, const Tensor& w, const Tensor& b, Tensor* rm, Tensor* rv) {
  return {pt, cuda::ptr_or_null(w), cuda::ptr_or_null(b), rm ? cuda::mut_ptr_or_null(*rm) : nullptr,
          rv ? cuda::mut_ptr_or_null(*rv) : nullptr};
}

bool cuda_batch_norm_dual_act_fwd(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& rm, Tensor& rv,
                                  const Tensor& r, const Tensor& rw, const Tensor& rb, Tensor& rrm, Tensor& rrv,
                                  double momentum, double eps, bool channels_last, Tensor& y, Tensor& save_mean,
                                  Tensor& save_invstd, Tensor& r_save_mean, Tensor& r_save_invstd) {
  const char* op = "batch_norm_dual_add_relu";
  if (!dual_applies(x, channels_last, w, b, rm, rv, r, rw, rb, rrm, rrv)) return false;
  cuda::KernelContext ctx(op, {&x, &r, &y, &save_mean, &save_invstd, &r_save_mean, &r_save_invstd});
  KOLO_CHECK(eps >= CUDNN_BN_MIN_EPSILON, op, ": eps ", eps, " below cuDNN's minimum ", CUDNN_BN_MIN_EPSILON);
  const BnLayout l = layout_of(x, channels_last, op);
  const cuda::BnNhwcShape shape{l.n, l.c};
  const DType pt = dtype_or(w, x.dtype());
  cuda::DeviceScratch ws(ctx.device(), std::max<size_t>(cuda::bn_nhwc_dual_workspace_bytes(shape), 16));
  cuda::launch_bn_nhwc_dual_forward(x.dtype(), shape, nhwc_params(pt, w, b, &rm, &rv),
                                    nhwc_params(pt, rw, rb, &rrm, &rrv), dtype_or(rm, x.dtype()), momentum, eps,
                                    x.data_ptr(), r.data_ptr(), y.data_ptr(), save_mean.data<float>(),
                                    save_invstd.data<float>(), r_save_mean.data<float>(), r_save_invstd.data<float>(),
                                    ws.get(), ctx.stream());
  return true;
}

void cuda_batch_norm_dual_act_bwd(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& b,
                                  const Tensor& save_mean, const Tensor& save_invstd, const Tensor& r,
                                  const Tensor& rw, const Tensor& rb, const Tensor& r_save_mean,
                                  const Tensor& r_save_invstd, bool channels_last, Tensor& dx, Tensor& dw,
                                  Tensor& db, Tensor& dr, Tensor& drw, Tensor& drb) {
  const char* op = "batch_norm_dual_add_relu backward";
  cuda::KernelContext ctx(op, {&dy, &x, &r, &save_mean, &save_invstd, &r_save_mean, &r_save_invstd});
  const BnLayout l = layout_of(x, channels_last, op);
  const cuda::BnNhwcShape shape{l.n, l.c};
  const DType pt = dtype_or(w, x.dtype());
  cuda::DeviceScratch ws(ctx.device(), std::max<size_t>(cuda::bn_nhwc_dual_workspace_bytes(shape), 16));
  cuda::launch_bn_nhwc_dual_backward(x.dtype(), shape, nhwc_params(pt, w, b, nullptr, nullptr),
                                     nhwc_params(pt, rw, rb, nullptr, nullptr), dy.data_ptr(), x.data_ptr(),
                                     r.data_ptr(), save_mean.data<float>(), save_invstd.data<float>(),
                                     r_save_mean.data<float>(), r_save_invstd.data<float>(), cuda::mut_ptr_or_null(dx),
                                     cuda::mut_ptr_or_null(dw), cuda::mut_ptr_or_null(db), cuda::mut_ptr_or_null(dr),
                                     cuda::mut_ptr_or_null(drw), cuda::mut_ptr_or_null(drb), ws.get(), ctx.stream());
}

}  // namespace

KOLO_REGISTER_KERNEL(batch_norm_fwd, CUDA, cuda_batch_norm_fwd);
KOLO_REGISTER_KERNEL(batch_norm_bwd, CUDA, cuda_batch_norm_bwd);
KOLO_REGISTER_KERNEL(batch_norm_act_fwd, CUDA, cuda_batch_norm_act_fwd);
KOLO_REGISTER_KERNEL(batch_norm_act_bwd, CUDA, cuda_batch_norm_act_bwd);
KOLO_REGISTER_KERNEL(batch_norm_dual_act_fwd, CUDA, cuda_batch_norm_dual_act_fwd);
KOLO_REGISTER_KERNEL(batch_norm_dual_act_bwd, CUDA, cuda_batch_norm_dual_act_bwd);

}  // namespace kolo
