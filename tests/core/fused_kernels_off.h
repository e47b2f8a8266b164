// Test helper: empties the CPU slots of the fused batch norm + ReLU kernels for a scope, so the op takes the
// unfused composite fallback that devices without a fused kernel run; the slots are refilled afterwards.
#pragma once

#include <functional>
#include <utility>

#include "core/ops/kernels/batch_norm_act.h"

namespace kolo::testing {

// Forwards to the kernel a slot held before the scope emptied it (the slot hands out a callable, not the
// registered function pointer, so refilling goes through this trampoline).
template <typename Fn>
struct SavedKernel;
template <typename R, typename... A>
struct SavedKernel<R(A...)> {
  static inline std::function<R(A...)> call;
  static R run(A... a) { return call(std::forward<A>(a)...); }
};

class WithoutFusedCpuKernels {
 public:
  WithoutFusedCpuKernels() {
    // Saved once: after the first scope the slots hold the trampolines, which must not be saved over it.
    if (!SavedKernel<batch_norm_act_fwd_fn>::call)
      SavedKernel<batch_norm_act_fwd_fn>::call = batch_norm_act_fwd_kernel()(Device::cpu());
    if (!SavedKernel<batch_norm_act_bwd_fn>::call)
      SavedKernel<batch_norm_act_bwd_fn>::call = batch_norm_act_bwd_kernel()(Device::cpu());
    batch_norm_act_fwd_kernel().set(DeviceType::CPU, nullptr);
    batch_norm_act_bwd_kernel().set(DeviceType::CPU, nullptr);
  }
  ~WithoutFusedCpuKernels() {
    batch_norm_act_fwd_kernel().set(DeviceType::CPU, &SavedKernel<batch_norm_act_fwd_fn>::run);
    batch_norm_act_bwd_kernel().set(DeviceType::CPU, &SavedKernel<batch_norm_act_bwd_fn>::run);
  }
  WithoutFusedCpuKernels(const WithoutFusedCpuKernels&) = delete;
  WithoutFusedCpuKernels& operator=(const WithoutFusedCpuKernels&) = delete;
};

}  // namespace kolo::testing
