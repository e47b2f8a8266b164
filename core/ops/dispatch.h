// Kernel slots: each low-level kernel is declared once with its signature, and every device backend
// registers its implementation at load time. Ops call `kernel_slot()(device)(args...)`.
//
// This keeps CPU and CUDA implementations in their own files (ops/cpu, ops/cuda) with no #if in op code,
// and turns a kernel missing on a device into a clear kolo::Error instead of a link failure. kolo's
// libraries are shared objects, so every registration in them runs when the library is loaded.
#pragma once

#include <array>
#include <utility>

#include "core/device/device.h"
#include "core/ops/kernel_profiler.h"
#include "core/util/error.h"

namespace kolo {

template <typename Fn>
class KernelCall;

// The kernel chosen for one device; calling it runs the kernel (under KernelProfiler when that is on).
template <typename R, typename... Args>
class KernelCall<R(Args...)> {
 public:
  KernelCall(R (*fn)(Args...), const char* name, Device device) : fn_(fn), name_(name), device_(device) {}
  R operator()(Args... args) const {
    if (!KernelProfiler::active()) return fn_(std::forward<Args>(args)...);
    KernelProfiler::Scope scope(name_, device_);
    return fn_(std::forward<Args>(args)...);
  }

 private:
  R (*fn_)(Args...);
  const char* name_;
  Device device_;
};

template <typename Fn>
class KernelSlot {
 public:
  explicit KernelSlot(const char* name) : name_(name) {}
  KernelCall<Fn> operator()(Device device) const {
    Fn* fn = fns_[static_cast<int>(device.type)];
    KOLO_CHECK(fn != nullptr, "kernel '", name_, "' is not available on ", device.str());
    return KernelCall<Fn>(fn, name_, device);
  }
  bool has(DeviceType type) const { return fns_[static_cast<int>(type)] != nullptr; }
  void set(DeviceType type, Fn* fn) { fns_[static_cast<int>(type)] = fn; }
  const char* name() const { return name_; }

 private:
  const char* name_;
  std::array<Fn*, 2> fns_{};
};

struct KernelRegistrar {
  template <typename Slot, typename Fn>
  KernelRegistrar(Slot& slot, DeviceType type, Fn* fn) {
    slot.set(type, fn);
  }
};

}  // namespace kolo

// In a header: KOLO_DECLARE_KERNEL(relu_fwd, void(const Tensor&, Tensor&));
#define KOLO_DECLARE_KERNEL(name, ...)        \
  using name##_fn = __VA_ARGS__;              \
  ::kolo::KernelSlot<name##_fn>& name##_kernel();

// In exactly one .cc of the op family: KOLO_DEFINE_KERNEL(relu_fwd);
#define KOLO_DEFINE_KERNEL(name)                               \
  ::kolo::KernelSlot<name##_fn>& name##_kernel() {             \
    static ::kolo::KernelSlot<name##_fn> slot(#name);          \
    return slot;                                               \
  }

// In a backend file: KOLO_REGISTER_KERNEL(relu_fwd, CPU, cpu_relu_fwd);
#define KOLO_REGISTER_KERNEL(name, DEVICE, fn)                                  \
  static ::kolo::KernelRegistrar kolo_registrar_##name##_##DEVICE(              \
      ::kolo::name##_kernel(), ::kolo::DeviceType::DEVICE, static_cast<::kolo::name##_fn*>(fn))
