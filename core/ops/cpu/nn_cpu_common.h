// Helpers shared by the CPU kernels of the sequence-model ops: floating-only dtype dispatch, the
// accumulation type (double for f64, float otherwise) and conversions to and from half storage.
#pragma once

#include <type_traits>

#include "core/tensor/tensor.h"

namespace kolo::cpu {

template <typename T>
using AccOf = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T, typename A>
inline T store_as(A v) {
  if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>) return T(static_cast<float>(v));
  else return static_cast<T>(v);
}

template <typename A, typename T>
inline A load_as(T v) {
  if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>) return static_cast<A>(static_cast<float>(v));
  else return static_cast<A>(v);
}

// Calls fn(T{}) for floating dtypes; names `op` in the error for any other dtype.
template <typename Fn>
void dispatch_floating(DType t, const char* op, Fn&& fn) {
  switch (t) {
    case DType::F32: fn(float{}); return;
    case DType::F64: fn(double{}); return;
    case DType::BF16: fn(bf16{}); return;
    case DType::F16: fn(f16{}); return;
    default: KOLO_FAIL(op, ": needs a floating tensor, got ", dtype_name(t));
  }
}

}  // namespace kolo::cpu
