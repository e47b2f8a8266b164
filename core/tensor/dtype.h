// Element types of kolo tensors and the compile-time mapping between C++ types and DType.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/tensor/half.h"

namespace kolo {

enum class DType : uint8_t { F32 = 0, F64, BF16, F16, I32, I64, U8 };

constexpr int kNumDTypes = 7;

size_t dtype_size(DType t);
const char* dtype_name(DType t);
DType dtype_from_name(const std::string& name);  // "f32", "float32", "bf16", ... throws on unknown
bool is_floating(DType t);

template <typename T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::F32; };
template <> struct DTypeOf<double> { static constexpr DType value = DType::F64; };
template <> struct DTypeOf<bf16> { static constexpr DType value = DType::BF16; };
template <> struct DTypeOf<f16> { static constexpr DType value = DType::F16; };
template <> struct DTypeOf<int32_t> { static constexpr DType value = DType::I32; };
template <> struct DTypeOf<int64_t> { static constexpr DType value = DType::I64; };
template <> struct DTypeOf<uint8_t> { static constexpr DType value = DType::U8; };

template <typename T>
constexpr DType dtype_of = DTypeOf<T>::value;

// Calls fn(T{}) with the C++ type matching `t`.
template <typename Fn>
decltype(auto) dispatch_dtype(DType t, Fn&& fn) {
  switch (t) {
    case DType::F32: return fn(float{});
    case DType::F64: return fn(double{});
    case DType::BF16: return fn(bf16{});
    case DType::F16: return fn(f16{});
    case DType::I32: return fn(int32_t{});
    case DType::I64: return fn(int64_t{});
    case DType::U8: return fn(uint8_t{});
  }
  return fn(float{});
}

}  // namespace kolo
