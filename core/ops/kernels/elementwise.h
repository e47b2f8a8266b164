// Elementwise and reduction kernels. Operands of binary kernels are already broadcast to the output
// shape (stride-0 views), so kernels only walk strides.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "core/ops/dispatch.h"
#include "core/tensor/tensor.h"

namespace kolo {

enum class UnaryOp : uint8_t { Neg, Exp, Log, Sqrt, Rsqrt, Tanh, Sigmoid, Relu, Gelu, Square, Abs, Reciprocal };
enum class BinaryOp : uint8_t { Add, Sub, Mul, Div, Max, Min, Eq };  // Eq yields 1 or 0
enum class ReduceOp : uint8_t { Sum, Max, Min };

#ifdef __CUDACC__
#define KOLO_HOST_DEVICE __host__ __device__
#else
#define KOLO_HOST_DEVICE
#endif

// A reduction's starting value, in the accumulator type A, for the CPU and CUDA kernels alike: 0 for Sum; for
// Max/Min -inf/+inf in floating types (a row of -inf has maximum -inf, not the lowest finite value), the
// extremes in integer ones.
template <typename A>
KOLO_HOST_DEVICE inline A reduce_identity(ReduceOp op) {
  if (op == ReduceOp::Sum) return A(0);
  if constexpr (std::numeric_limits<A>::has_infinity) {
    if (op == ReduceOp::Max) return -std::numeric_limits<A>::infinity();
    return std::numeric_limits<A>::infinity();
  } else {
    if (op == ReduceOp::Max) return std::numeric_limits<A>::lowest();
    return std::numeric_limits<A>::max();
  }
}

// out = op(x); out contiguous, same shape.
KOLO_DECLARE_KERNEL(unary, void(UnaryOp op, const Tensor& x, Tensor& out));
// out = grad * d op(x)/dx, given x and y = op(x) (kernels use whichever is cheaper).
KOLO_DECLARE_KERNEL(unary_backward, void(UnaryOp op, const Tensor& grad, const Tensor& x, const Tensor& y,
                                         Tensor& out));
// out = op(a, b); a and b have out's shape (possibly stride 0), out contiguous.
KOLO_DECLARE_KERNEL(binary, void(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out));
// out = x * scale + shift.
KOLO_DECLARE_KERNEL(affine, void(const Tensor& x, double scale, double shift, Tensor& out));
// y += alpha * x in place; y contiguous, x same shape any strides.
KOLO_DECLARE_KERNEL(axpy, void(Tensor& y, const Tensor& x, double alpha));
// out[i] = reduce over the trailing `inner` elements of row i of contiguous x viewed as [rows, inner].
KOLO_DECLARE_KERNEL(reduce_rows, void(ReduceOp op, const Tensor& x, int64_t inner, Tensor& out));
// out[o, i] = reduce over r of contiguous x viewed as [outer, r, inner] (column reductions, e.g. bias grads).
KOLO_DECLARE_KERNEL(reduce_mid, void(ReduceOp op, const Tensor& x, int64_t outer, int64_t r, int64_t inner,
                                     Tensor& out));
// out (i64) = argmax over the last dimension of contiguous x.
KOLO_DECLARE_KERNEL(argmax_last, void(const Tensor& x, Tensor& out));
// True when every element is finite (for NaN/Inf checks on gradients).
KOLO_DECLARE_KERNEL(all_finite, bool(const Tensor& x));

}  // namespace kolo
