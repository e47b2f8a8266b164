// Elementwise loops over raw buffers, dispatched once per call on dtype (and reduce op).
#include "collectives/reduce_kernels.h"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "core/util/error.h"

namespace kolo::coll {
namespace {

// The arithmetic type of a storage type: float for the 16-bit floats, itself otherwise.
template <typename T>
using Compute = std::conditional_t<std::is_same_v<T, bf16> || std::is_same_v<T, f16>, float, T>;

template <typename T, typename F>
void reduce_loop(T* acc, const T* in, int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i) {
    acc[i] = static_cast<T>(f(static_cast<Compute<T>>(acc[i]), static_cast<Compute<T>>(in[i])));
  }
}

}  // namespace

void reduce_into(void* acc, const void* in, int64_t count, DType dtype, ReduceOp op) {
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    using C = Compute<T>;
    T* a = static_cast<T*>(acc);
    const T* b = static_cast<const T*>(in);
    switch (op) {
      case ReduceOp::Sum: reduce_loop(a, b, count, [](C x, C y) { return x + y; }); break;
      case ReduceOp::Product: reduce_loop(a, b, count, [](C x, C y) { return x * y; }); break;
      case ReduceOp::Min: reduce_loop(a, b, count, [](C x, C y) { return std::min(x, y); }); break;
      case ReduceOp::Max: reduce_loop(a, b, count, [](C x, C y) { return std::max(x, y); }); break;
      case ReduceOp::Average: KOLO_FAIL("reduce_into: Average must be lowered to Sum + scale");
    }
  });
}

void scale_buffer(void* buf, int64_t count, DType dtype, double factor) {
  if (factor == 1.0) return;
  KOLO_CHECK(is_floating(dtype), "scale factor ", factor, " on integer dtype ", dtype_name(dtype));
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    using C = Compute<T>;
    if constexpr (std::is_floating_point_v<C>) {
      T* p = static_cast<T*>(buf);
      const C f = static_cast<C>(factor);
      for (int64_t i = 0; i < count; ++i) p[i] = static_cast<T>(static_cast<C>(p[i]) * f);
    }
  });
}

void divide_buffer(void* buf, int64_t count, DType dtype, int64_t divisor) {
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* p = static_cast<T*>(buf);
    if constexpr (std::is_integral_v<T>) {
      for (int64_t i = 0; i < count; ++i) p[i] = static_cast<T>(p[i] / static_cast<T>(divisor));
    } else {
      using C = Compute<T>;
      const C f = C(1) / static_cast<C>(divisor);
      for (int64_t i = 0; i < count; ++i) p[i] = static_cast<T>(static_cast<C>(p[i]) * f);
    }
  });
}

void convert_buffer(const void* src, DType src_type, void* dst, DType dst_type, int64_t count, double scale) {
  if (src_type == dst_type && scale == 1.0) {
    if (src != dst) std::memcpy(dst, src, static_cast<size_t>(count) * dtype_size(src_type));
    return;
  }
  dispatch_dtype(src_type, [&](auto stag) {
    using S = decltype(stag);
    dispatch_dtype(dst_type, [&](auto dtag) {
      using D = decltype(dtag);
      const S* s = static_cast<const S*>(src);
      D* d = static_cast<D*>(dst);
      if (scale == 1.0) {
        for (int64_t i = 0; i < count; ++i) d[i] = static_cast<D>(static_cast<Compute<D>>(static_cast<Compute<S>>(s[i])));
      } else {
        const double f = scale;
        for (int64_t i = 0; i < count; ++i)
          d[i] = static_cast<D>(static_cast<Compute<D>>(static_cast<double>(static_cast<Compute<S>>(s[i])) * f));
      }
    });
  });
}

}  // namespace kolo::coll
