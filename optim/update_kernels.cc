// CPU implementations of the fused optimizer updates (see update_kernels.h for the formulas) and the
// dispatch of each update to the calling thread's update device.
#include "optim/update_kernels.h"

#include <cmath>

#include "core/tensor/half.h"
#include "core/util/error.h"

namespace kolo::optim_kernels {

namespace {
constexpr int64_t kParallelMin = 16384;  // below this the OpenMP fork costs more than the loop

thread_local Device t_update_device = Device::cpu();

void cpu_sgd_update(Device, std::span<float> param, std::span<const float> grad, std::span<float> buf,
                    const SgdParams& h) {
  const int64_t n = static_cast<int64_t>(param.size());
  float* p = param.data();
  const float* g = grad.data();
  float* b = buf.data();
  const float lr = h.lr_at ? *h.lr_at : h.lr, mu = h.momentum, damp = 1.0f - h.dampening, wd = h.weight_decay, tr = h.trust;
  const bool nesterov = h.nesterov, first = h.step_at ? *h.step_at == 1.0f : h.first_step, use_mom = mu != 0.0f;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    float d = (g[i] + wd * p[i]) * tr;
    if (use_mom) {
      const float m = first ? d : mu * b[i] + damp * d;
      b[i] = m;
      d = nesterov ? d + mu * m : m;
    }
    p[i] -= lr * d;
  }
}

void cpu_adam_update(Device, std::span<float> param, std::span<const float> grad, std::span<float> exp_avg,
                     std::span<float> exp_avg_sq, const AdamParams& h) {
  const int64_t n = static_cast<int64_t>(param.size());
  float* p = param.data();
  const float* g = grad.data();
  float* m = exp_avg.data();
  float* v = exp_avg_sq.data();
  const double t = h.step_at ? static_cast<double>(*h.step_at) : static_cast<double>(h.step);
  const float lr = h.lr_at ? *h.lr_at : h.lr;
  const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(h.beta1), t));
  const float bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(static_cast<double>(h.beta2), t)));
  const float step_size = lr / bc1;
  const float b1 = h.beta1, b2 = h.beta2, eps = h.eps;
  const float l2 = h.decoupled ? 0.0f : h.weight_decay;
  const float shrink = h.decoupled ? 1.0f - lr * h.weight_decay : 1.0f;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i] + l2 * p[i];
    const float mi = b1 * m[i] + (1.0f - b1) * gi;
    const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * shrink - step_size * mi / (std::sqrt(vi) / bc2_sqrt + eps);
  }
}

void cpu_lamb_update(Device, std::span<float> param, std::span<const float> grad, std::span<float> exp_avg,
                     std::span<float> exp_avg_sq, std::span<float> scratch, const LambParams& h) {
  const int64_t n = static_cast<int64_t>(param.size());
  float* p = param.data();
  const float* g = grad.data();
  float* m = exp_avg.data();
  float* v = exp_avg_sq.data();
  float* u = scratch.data();
  const double t = static_cast<double>(h.step);
  const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(h.beta1), t));
  const float bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(h.beta2), t));
  const float b1 = h.beta1, b2 = h.beta2, eps = h.eps, wd = h.weight_decay;
  double p_sq = 0.0, u_sq = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : p_sq, u_sq) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float mi = b1 * m[i] + (1.0f - b1) * g[i];
    const float vi = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
    m[i] = mi;
    v[i] = vi;
    const float ui = (mi / bc1) / (std::sqrt(vi / bc2) + eps) + wd * p[i];
    u[i] = ui;
    p_sq += static_cast<double>(p[i]) * p[i];
    u_sq += static_cast<double>(ui) * ui;
  }
  float trust = 1.0f;
  if (h.adapt && p_sq > 0.0 && u_sq > 0.0) trust = static_cast<float>(std::sqrt(p_sq) / std::sqrt(u_sq));
  const float s = h.lr * trust;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) p[i] -= s * u[i];
}

double cpu_sum_squares(Device, std::span<const float> x) {
  const int64_t n = static_cast<int64_t>(x.size());
  const float* a = x.data();
  double s = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : s) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(a[i]) * a[i];
  return s;
}

void cpu_sum_squares_to(Device d, std::span<const float> x, double* out) { *out = cpu_sum_squares(d, x); }

void cpu_scale_inplace(Device, std::span<float> x, float s) {
  const int64_t n = static_cast<int64_t>(x.size());
  float* a = x.data();
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) a[i] *= s;
}

template <typename T>
bool unscale_loop(const T* src, float* dst, int64_t n, float inv, bool check) {
  int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float v = static_cast<float>(src[i]) * inv;
    dst[i] = v;
    if (check) bad |= !std::isfinite(v);
  }
  return bad == 0;
}

bool cpu_unscale_to_f32(Device, const void* src, DType dt, std::span<float> dst, float inv, bool check) {
  const int64_t n = static_cast<int64_t>(dst.size());
  switch (dt) {
    case DType::F32: return unscale_loop(static_cast<const float*>(src), dst.data(), n, inv, check);
    case DType::BF16: return unscale_loop(static_cast<const bf16*>(src), dst.data(), n, inv, check);
    case DType::F16: return unscale_loop(static_cast<const f16*>(src), dst.data(), n, inv, check);
    default: KOLO_FAIL("optimizer: cannot convert ", dtype_name(dt), " gradients to f32 (expected f32, bf16, f16)");
  }
}

template <typename T>
void cast_loop(const float* src, T* dst, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) dst[i] = T(src[i]);
}

void cpu_cast_from_f32(Device, std::span<const float> src, void* dst, DType dt) {
  const int64_t n = static_cast<int64_t>(src.size());
  switch (dt) {
    case DType::F32: cast_loop(src.data(), static_cast<float*>(dst), n); return;
    case DType::BF16: cast_loop(src.data(), static_cast<bf16*>(dst), n); return;
    case DType::F16: cast_loop(src.data(), static_cast<f16*>(dst), n); return;
    default: KOLO_FAIL("optimizer: cannot write f32 master weights into ", dtype_name(dt), " parameters");
  }
}

}  // namespace

Device update_device() { return t_update_device; }

UpdateDeviceScope::UpdateDeviceScope(Device device) : previous_(t_update_device) { t_update_device = device; }
UpdateDeviceScope::~UpdateDeviceScope() { t_update_device = previous_; }

void sgd_update(std::span<float> param, std::span<const float> grad, std::span<float> momentum_buf,
                const SgdParams& h) {
  optim_sgd_update_kernel()(t_update_device)(t_update_device, param, grad, momentum_buf, h);
}

void adam_update(std::span<float> param, std::span<const float> grad, std::span<float> exp_avg,
                 std::span<float> exp_avg_sq, const AdamParams& h) {
  optim_adam_update_kernel()(t_update_device)(t_update_device, param, grad, exp_avg, exp_avg_sq, h);
}

void lamb_update(std::span<float> param, std::span<const float> grad, std::span<float> exp_avg,
                 std::span<float> exp_avg_sq, std::span<float> scratch, const LambParams& h) {
  optim_lamb_update_kernel()(t_update_device)(t_update_device, param, grad, exp_avg, exp_avg_sq, scratch, h);
}

double sum_squares(std::span<const float> x) { return optim_sum_squares_kernel()(t_update_device)(t_update_device, x); }

void sum_squares_to(std::span<const float> x, double* out) {
  optim_sum_squares_to_kernel()(t_update_device)(t_update_device, x, out);
}

void scale_inplace(std::span<float> x, float s) {
  optim_scale_inplace_kernel()(t_update_device)(t_update_device, x, s);
}

bool unscale_to_f32(const void* src, DType src_dtype, std::span<float> dst, float inv_scale, bool check) {
  return optim_unscale_to_f32_kernel()(t_update_device)(t_update_device, src, src_dtype, dst, inv_scale, check);
}

void cast_from_f32(std::span<const float> src, void* dst, DType dst_dtype) {
  optim_cast_from_f32_kernel()(t_update_device)(t_update_device, src, dst, dst_dtype);
}

}  // namespace kolo::optim_kernels

namespace kolo {

KOLO_DEFINE_KERNEL(optim_sgd_update);
KOLO_DEFINE_KERNEL(optim_adam_update);
KOLO_DEFINE_KERNEL(optim_lamb_update);
KOLO_DEFINE_KERNEL(optim_sum_squares);
KOLO_DEFINE_KERNEL(optim_sum_squares_to);
KOLO_DEFINE_KERNEL(optim_scale_inplace);
KOLO_DEFINE_KERNEL(optim_unscale_to_f32);
KOLO_DEFINE_KERNEL(optim_cast_from_f32);
KOLO_REGISTER_KERNEL(optim_sgd_update, CPU, optim_kernels::cpu_sgd_update);
KOLO_REGISTER_KERNEL(optim_adam_update, CPU, optim_kernels::cpu_adam_update);
KOLO_REGISTER_KERNEL(optim_lamb_update, CPU, optim_kernels::cpu_lamb_update);
KOLO_REGISTER_KERNEL(optim_sum_squares, CPU, optim_kernels::cpu_sum_squares);
KOLO_REGISTER_KERNEL(optim_sum_squares_to, CPU, optim_kernels::cpu_sum_squares_to);
KOLO_REGISTER_KERNEL(optim_scale_inplace, CPU, optim_kernels::cpu_scale_inplace);
KOLO_REGISTER_KERNEL(optim_unscale_to_f32, CPU, optim_kernels::cpu_unscale_to_f32);
KOLO_REGISTER_KERNEL(optim_cast_from_f32, CPU, optim_kernels::cpu_cast_from_f32);

}  // namespace kolo
