// Device-side element types for kolo dtypes, conversions between them, and the dtype switch used by the
// .cu files. Half types are stored as __nv_bfloat16 / __half and computed in float (round to nearest even
// on store, like the CPU's bf16/f16 structs); f64 computes in double, integers in their own type.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "core/ops/cuda/launch_config.h"
#include "core/ops/cuda/strided_indexer.h"
#include "core/tensor/dtype.h"

namespace kolo::cuda {

template <typename T>
struct AccOf {
  using type = std::conditional_t<std::is_integral_v<T>, T, float>;
};
template <>
struct AccOf<double> {
  using type = double;
};
template <typename T>
using Acc = typename AccOf<T>::type;

template <typename T>
constexpr bool is_half_v = std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>;

template <typename T>
__host__ __device__ __forceinline__ float half_to_float(T v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return __bfloat162float(v);
  else return __half2float(v);
}

// Converts between any two element types the way the CPU kernels do (halves go through float).
template <typename D, typename S>
__host__ __device__ __forceinline__ D convert(S v) {
  if constexpr (std::is_same_v<D, S>) {
    return v;
  } else if constexpr (is_half_v<S>) {
    return convert<D>(half_to_float(v));
  } else if constexpr (std::is_same_v<D, __nv_bfloat16>) {
    return __float2bfloat16_rn(static_cast<float>(v));
  } else if constexpr (std::is_same_v<D, __half>) {
    return __float2half_rn(static_cast<float>(v));
  } else {
    return static_cast<D>(v);
  }
}

// Calls fn(T{}) with the device element type of `t`.
template <typename Fn>
void dispatch_device_dtype(DType t, Fn&& fn) {
  switch (t) {
    case DType::F32: fn(float{}); return;
    case DType::F64: fn(double{}); return;
    case DType::BF16: fn(__nv_bfloat16{}); return;
    case DType::F16: fn(__half{}); return;
    case DType::I32: fn(int32_t{}); return;
    case DType::I64: fn(int64_t{}); return;
    case DType::U8: fn(uint8_t{}); return;
  }
}

// Same for floating dtypes only; throws (naming `op`) for integer dtypes.
template <typename Fn>
void dispatch_float_dtype(DType t, const char* op, Fn&& fn) {
  switch (t) {
    case DType::F32: fn(float{}); return;
    case DType::F64: fn(double{}); return;
    case DType::BF16: fn(__nv_bfloat16{}); return;
    case DType::F16: fn(__half{}); return;
    default: KOLO_FAIL(op, " on CUDA needs a floating dtype, got ", dtype_name(t));
  }
}

// Same for the dtypes the 16-byte-vector kernels take (f32, bf16, f16); throws (naming `op`) for the others.
template <typename Fn>
void dispatch_vector_float_dtype(DType t, const char* op, Fn&& fn) {
  switch (t) {
    case DType::F32: fn(float{}); return;
    case DType::BF16: fn(__nv_bfloat16{}); return;
    case DType::F16: fn(__half{}); return;
    default: KOLO_FAIL(op, " needs f32, bf16 or f16, got ", dtype_name(t));
  }
}

// Offsets of element `linear` in each operand of an indexer.
template <int N>
__device__ __forceinline__ void strided_offsets(const StridedIndexer<N>& ix, int64_t linear, int64_t (&off)[N]) {
#pragma unroll
  for (int k = 0; k < N; ++k) off[k] = 0;
  for (int d = ix.ndim - 1; d >= 0; --d) {
    const int64_t size = ix.sizes[d];
    const int64_t i = linear % size;
    linear /= size;
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] += i * ix.strides[k][d];
  }
}

// A 16-byte (or smaller for wide types) aligned bundle for vectorised loads and stores.
template <typename T>
constexpr int vec_width() {
  return sizeof(T) >= 16 ? 1 : static_cast<int>(16 / sizeof(T));
}

template <typename T, int W>
struct alignas(sizeof(T) * W) Vec {
  T v[W];
};

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace kolo::cuda
