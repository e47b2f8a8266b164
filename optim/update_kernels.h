// The optimizers' update rules as plain functions over (param, grad, state) spans of f32.
//
// Each function is one fused pass over its spans (OpenMP on the CPU). They take spans rather than tensors
// so that a CUDA multi-tensor-apply can replace them one for one: same arguments, device pointers.
// Which one runs is chosen by the calling thread's update device (UpdateDeviceScope, set by
// Optimizer::step from its flat buffers) through per-device kernel slots: optim/cuda registers the CUDA
// versions, so the optimizers' update_group code is the same on both devices.
// Formulas follow PyTorch's torch.optim definitions (noted per function) so results can be compared
// against it.
#pragma once

#include <cstdint>
#include <span>

#include "core/device/device.h"
#include "core/ops/dispatch.h"
#include "core/tensor/dtype.h"

namespace kolo::optim_kernels {

// torch.optim.SGD: g += wd*p; buf = first ? g : mu*buf + (1-dampening)*g; d = nesterov ? g + mu*buf : buf
// (d = g when mu == 0); p -= lr*d. `trust` scales the (decayed) gradient before momentum (LARS; 1 for SGD).
struct SgdParams {
  float lr = 0.01f;
  float momentum = 0.0f;
  float dampening = 0.0f;
  float weight_decay = 0.0f;
  bool nesterov = false;
  bool first_step = false;  // momentum buffer starts as the first gradient
  float trust = 1.0f;
  // When set, the learning rate is read from here (memory of the update device) when the update runs, not
  // taken from `lr`: a CUDA graph that captured the update then follows the value written there later.
  const float* lr_at = nullptr;
  // When set, the step count (this step included) read there decides first_step, for the same reason: a graph
  // captured at step 1 would otherwise restart the momentum buffer at every replay.
  const float* step_at = nullptr;
};
void sgd_update(std::span<float> param, std::span<const float> grad, std::span<float> momentum_buf,
                const SgdParams& h);

// torch.optim.Adam / AdamW: with t = step (1-based), m = b1*m + (1-b1)*g, v = b2*v + (1-b2)*g^2,
// p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). Adam adds wd*p to g (L2); AdamW (decoupled)
// first does p *= 1 - lr*wd.
struct AdamParams {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  bool decoupled = false;  // AdamW
  int64_t step = 1;
  // When set, read from here (update-device memory) when the update runs instead of `lr` / `step` (the step
  // count as a float): a captured update then follows the schedule and the advancing step count.
  const float* lr_at = nullptr;
  const float* step_at = nullptr;
};
void adam_update(std::span<float> param, std::span<const float> grad, std::span<float> exp_avg,
                 std::span<float> exp_avg_sq, const AdamParams& h);

// LAMB (You et al. 2019, bias-corrected as NVIDIA's FusedLAMB): u = m_hat/(sqrt(v_hat)+eps) + wd*p;
// p -= lr * trust * u with trust = ||p|| / ||u|| (1 when either norm is 0 or `adapt` is false).
// Writes u into `scratch` (same length) to keep the update a two-phase pass without recomputation.
struct LambParams {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-6f;
  float weight_decay = 0.0f;
  bool adapt = true;
  int64_t step = 1;
};
void lamb_update(std::span<float> param, std::span<const float> grad, std::span<float> exp_avg,
                 std::span<float> exp_avg_sq, std::span<float> scratch, const LambParams& h);

// Sum of squares in double (norms of gradients and parameters for clipping and trust ratios).
double sum_squares(std::span<const float> x);
// The same written to *out, one double on the update device (host memory for the CPU), without waiting for
// it: the caller reads *out once the update stream got there (Optimizer::last_grad_norm).
void sum_squares_to(std::span<const float> x, double* out);
// x *= s.
void scale_inplace(std::span<float> x, float s);

// Mixed precision (optim/master_weights.h). dst[i] = float(src[i]) * inv_scale, where `src` points at
// dst.size() elements of `src_dtype` (F32, BF16 or F16) on the update device; an F32 `src` may be `dst`
// itself. With `check` it returns whether every dst[i] is finite (on CUDA this reads one flag back to the
// host); without, it returns true and never waits.
bool unscale_to_f32(const void* src, DType src_dtype, std::span<float> dst, float inv_scale, bool check);
// dst[i] = src[i] rounded to nearest even in `dst_dtype` (BF16 or F16; F32 copies), one pass, no host sync.
void cast_from_f32(std::span<const float> src, void* dst, DType dst_dtype);

// The device the spans passed to the functions above point into, for the calling thread (CPU by default).
Device update_device();
// Sets the calling thread's update device for its lifetime (restores the previous one after).
class UpdateDeviceScope {
 public:
  explicit UpdateDeviceScope(Device device);
  ~UpdateDeviceScope();
  UpdateDeviceScope(const UpdateDeviceScope&) = delete;
  UpdateDeviceScope& operator=(const UpdateDeviceScope&) = delete;

 private:
  Device previous_;
};

}  // namespace kolo::optim_kernels

namespace kolo {

// Per-device implementations behind the functions above (CPU in update_kernels.cc, CUDA in optim/cuda).
KOLO_DECLARE_KERNEL(optim_sgd_update, void(Device, std::span<float>, std::span<const float>, std::span<float>,
                                           const optim_kernels::SgdParams&));
KOLO_DECLARE_KERNEL(optim_adam_update, void(Device, std::span<float>, std::span<const float>, std::span<float>,
                                            std::span<float>, const optim_kernels::AdamParams&));
KOLO_DECLARE_KERNEL(optim_lamb_update, void(Device, std::span<float>, std::span<const float>, std::span<float>,
                                            std::span<float>, std::span<float>, const optim_kernels::LambParams&));
KOLO_DECLARE_KERNEL(optim_sum_squares, double(Device, std::span<const float>));
KOLO_DECLARE_KERNEL(optim_sum_squares_to, void(Device, std::span<const float>, double*));
KOLO_DECLARE_KERNEL(optim_scale_inplace, void(Device, std::span<float>, float));
KOLO_DECLARE_KERNEL(optim_unscale_to_f32, bool(Device, const void*, DType, std::span<float>, float, bool));
KOLO_DECLARE_KERNEL(optim_cast_from_f32, void(Device, std::span<const float>, void*, DType));

}  // namespace kolo
