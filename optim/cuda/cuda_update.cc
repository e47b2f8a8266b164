// CUDA registrations of the optimizer update slots: fold the hyper-parameters on the host exactly as the CPU
// rules do (update_kernels.cc), then enqueue the kernels of update_kernels.cu on the current stream.
#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/device/cuda/cuda_stream.h"
#include "core/tensor/tensor.h"
#include "optim/cuda/update_launch.h"
#include "optim/update_kernels.h"

namespace kolo::optim_cuda {

namespace {

void check_same_length(const char* op, size_t a, size_t b) {
  KOLO_CHECK(a == b, "optimizer update ", op, " on CUDA: spans of ", a, " and ", b, " elements differ in length");
}

// Device scratch of `n` doubles from the caching allocator (freed back to it after the launch is enqueued;
// the allocator's stream-ordered reuse keeps it valid for the kernels already queued on this stream).
Tensor scratch_f64(Device device, int64_t n) {
  NoGradGuard ng;
  return Tensor::empty({n}, DType::F64, device);
}

void cuda_sgd_update(Device dev, std::span<float> param, std::span<const float> grad, std::span<float> buf,
                     const optim_kernels::SgdParams& h) {
  check_same_length("sgd", param.size(), grad.size());
  const bool use_mom = h.momentum != 0.0f;
  if (use_mom) check_same_length("sgd", param.size(), buf.size());
  CudaDeviceGuard guard(dev.index);
  SgdArgs a{h.lr, h.momentum, 1.0f - h.dampening, h.weight_decay, h.trust, h.nesterov, h.first_step, use_mom,
            h.lr_at, h.step_at};
  launch_sgd(param.data(), grad.data(), buf.data(), static_cast<int64_t>(param.size()), a,
             current_cuda_stream_native(dev.index));
}

void cuda_adam_update(Device dev, std::span<float> param, std::span<const float> grad, std::span<float> exp_avg,
                      std::span<float> exp_avg_sq, const optim_kernels::AdamParams& h) {
  check_same_length("adam", param.size(), grad.size());
  check_same_length("adam", param.size(), exp_avg.size());
  check_same_length("adam", param.size(), exp_avg_sq.size());
  CudaDeviceGuard guard(dev.index);
  const double t = static_cast<double>(h.step);
  const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(h.beta1), t));
  AdamArgs a;
  a.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(static_cast<double>(h.beta2), t)));
  a.step_size = h.lr / bc1;
  a.beta1 = h.beta1;
  a.beta2 = h.beta2;
  a.eps = h.eps;
  a.l2 = h.decoupled ? 0.0f : h.weight_decay;
  a.shrink = h.decoupled ? 1.0f - h.lr * h.weight_decay : 1.0f;
  KOLO_CHECK(!h.lr_at == !h.step_at, "adam: a capturable update reads both its learning rate and its step count ",
             "from device memory");
  a.lr_at = h.lr_at;
  a.step_at = h.step_at;
  a.weight_decay = h.weight_decay;
  a.decoupled = h.decoupled;
  launch_adam(param.data(), grad.data(), exp_avg.data(), exp_avg_sq.data(), static_cast<int64_t>(param.size()), a,
              current_cuda_stream_native(dev.index));
}

void cuda_lamb_update(Device dev, std::span<float> param, std::span<const float> grad, std::span<float> exp_avg,
                      std::span<float> exp_avg_sq, std::span<float> scratch, const optim_kernels::LambParams& h) {
  check_same_length("lamb", param.size(), grad.size());
  check_same_length("lamb", param.size(), exp_avg.size());
  check_same_length("lamb", param.size(), exp_avg_sq.size());
  check_same_length("lamb", param.size(), scratch.size());
  CudaDeviceGuard guard(dev.index);
  const double t = static_cast<double>(h.step);
  LambArgs a;
  a.bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(h.beta1), t));
  a.bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(h.beta2), t));
  a.beta1 = h.beta1;
  a.beta2 = h.beta2;
  a.eps = h.eps;
  a.weight_decay = h.weight_decay;
  a.lr = h.lr;
  a.adapt = h.adapt;
  Tensor partials = scratch_f64(dev, lamb_partials_size());
  launch_lamb(param.data(), grad.data(), exp_avg.data(), exp_avg_sq.data(), scratch.data(),
              static_cast<int64_t>(param.size()), a, partials.data<double>(), current_cuda_stream_native(dev.index));
}

void cuda_sum_squares_to(Device dev, std::span<const float> x, double* out) {
  CudaDeviceGuard guard(dev.index);
  Tensor partials = scratch_f64(dev, sum_squares_partials_size());
  launch_sum_squares(x.data(), static_cast<int64_t>(x.size()), partials.data<double>(), out,
                     current_cuda_stream_native(dev.index));
}

// Returns a host value, so this one waits for the stream (callers: gradient-norm clipping, LARS norms).
double cuda_sum_squares(Device dev, std::span<const float> x) {
  Tensor out = scratch_f64(dev, 1);
  cuda_sum_squares_to(dev, x, out.data<double>());
  return out.to(Device::cpu()).item();
}

void cuda_scale_inplace(Device dev, std::span<float> x, float s) {
  CudaDeviceGuard guard(dev.index);
  launch_scale(x.data(), static_cast<int64_t>(x.size()), s, current_cuda_stream_native(dev.index));
}

bool cuda_unscale_to_f32(Device dev, const void* src, DType src_dtype, std::span<float> dst, float inv, bool check) {
  CudaDeviceGuard guard(dev.index);
  Tensor bad;
  if (check) {
    NoGradGuard ng;
    bad = Tensor::zeros({1}, DType::I32, dev);
  }
  launch_unscale_to_f32(src, src_dtype, dst.data(), static_cast<int64_t>(dst.size()), inv,
                        check ? bad.data<int32_t>() : nullptr, current_cuda_stream_native(dev.index));
  // The skip-or-step decision is the host's, so a checked conversion waits for this one flag.
  return !check || bad.to(Device::cpu()).item() == 0.0;
}

void cuda_cast_from_f32(Device dev, std::span<const float> src, void* dst, DType dst_dtype) {
  CudaDeviceGuard guard(dev.index);
  launch_cast_from_f32(src.data(), dst, dst_dtype, static_cast<int64_t>(src.size()),
                       current_cuda_stream_native(dev.index));
}

}  // namespace

}  // namespace kolo::optim_cuda

namespace kolo {

KOLO_REGISTER_KERNEL(optim_sgd_update, CUDA, optim_cuda::cuda_sgd_update);
KOLO_REGISTER_KERNEL(optim_adam_update, CUDA, optim_cuda::cuda_adam_update);
KOLO_REGISTER_KERNEL(optim_lamb_update, CUDA, optim_cuda::cuda_lamb_update);
KOLO_REGISTER_KERNEL(optim_sum_squares, CUDA, optim_cuda::cuda_sum_squares);
KOLO_REGISTER_KERNEL(optim_sum_squares_to, CUDA, optim_cuda::cuda_sum_squares_to);
KOLO_REGISTER_KERNEL(optim_scale_inplace, CUDA, optim_cuda::cuda_scale_inplace);
KOLO_REGISTER_KERNEL(optim_unscale_to_f32, CUDA, optim_cuda::cuda_unscale_to_f32);
KOLO_REGISTER_KERNEL(optim_cast_from_f32, CUDA, optim_cuda::cuda_cast_from_f32);

}  // namespace kolo
