// CPU elementwise and reduction kernels. Half types are computed in float; f32/f64 natively; f32 ReLU forward
// and backward take the per-ISA loops of relu_f32.h.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "core/ops/cpu/relu_f32.h"
#include "core/ops/cpu/strided.h"
#include "core/ops/kernels/elementwise.h"

namespace kolo {
namespace {

template <typename T>
using Acc = std::conditional_t<std::is_same_v<T, double>, double,
                               std::conditional_t<std::is_integral_v<T>, T, float>>;

template <typename T>
inline T cast_to(Acc<T> v) {
  if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>) return T(v);
  else return static_cast<T>(v);
}

template <typename A>
inline A unary_fn(UnaryOp op, A x) {
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Exp: return std::exp(x);
    case UnaryOp::Log: return std::log(x);
    case UnaryOp::Sqrt: return std::sqrt(x);
    case UnaryOp::Rsqrt: return A(1) / std::sqrt(x);
    case UnaryOp::Tanh: return std::tanh(x);
    case UnaryOp::Sigmoid: return A(1) / (A(1) + std::exp(-x));
    case UnaryOp::Relu: return x < A(0) ? A(0) : x;  // NaN passes through, as PyTorch: a divergence stays visible
    case UnaryOp::Gelu: return A(0.5) * x * (A(1) + std::erf(x * A(0.70710678118654752440)));
    case UnaryOp::Square: return x * x;
    case UnaryOp::Abs: return std::abs(x);
    case UnaryOp::Reciprocal: return A(1) / x;
  }
  return x;
}

// d op / dx given x and y = op(x).
template <typename A>
inline A unary_grad(UnaryOp op, A x, A y) {
  switch (op) {
    case UnaryOp::Neg: return A(-1);
    case UnaryOp::Exp: return y;
    case UnaryOp::Log: return A(1) / x;
    case UnaryOp::Sqrt: return A(0.5) / y;
    case UnaryOp::Rsqrt: return A(-0.5) * y * y * y;
    case UnaryOp::Tanh: return A(1) - y * y;
    case UnaryOp::Sigmoid: return y * (A(1) - y);
    case UnaryOp::Relu: return x > A(0) ? A(1) : A(0);
    case UnaryOp::Gelu: {
      const A cdf = A(0.5) * (A(1) + std::erf(x * A(0.70710678118654752440)));
      const A pdf = std::exp(A(-0.5) * x * x) * A(0.39894228040143267794);
      return cdf + x * pdf;
    }
    case UnaryOp::Square: return A(2) * x;
    case UnaryOp::Abs: return x > A(0) ? A(1) : (x < A(0) ? A(-1) : A(0));
    case UnaryOp::Reciprocal: return -y * y;
  }
  return A(0);
}

template <typename A>
inline A binary_fn(BinaryOp op, A a, A b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div:
      if constexpr (std::is_integral_v<A>) {
        // x86 traps on INT_MIN / -1; two's complement negation is what every other platform returns.
        if constexpr (std::is_signed_v<A>)
          if (b == A(-1)) return static_cast<A>(std::make_unsigned_t<A>(0) - static_cast<std::make_unsigned_t<A>>(a));
      }
      return a / b;
    // NaN in either operand gives NaN, as PyTorch's maximum/minimum (a > b alone drops a NaN in a).
    case BinaryOp::Max: return a != a || a > b ? a : b;
    case BinaryOp::Min: return a != a || a < b ? a : b;
    case BinaryOp::Eq: return a == b ? A(1) : A(0);
  }
  return a;
}

// Calls f(std::integral_constant<E, op>) so that a loop written once gets the op as a compile-time constant:
// the per-element switch folds away and the loop vectorises (the runtime switch inside a loop does neither).
template <typename F>
void with_unary_op(UnaryOp op, F&& f) {
  switch (op) {
    case UnaryOp::Neg: return f(std::integral_constant<UnaryOp, UnaryOp::Neg>{});
    case UnaryOp::Exp: return f(std::integral_constant<UnaryOp, UnaryOp::Exp>{});
    case UnaryOp::Log: return f(std::integral_constant<UnaryOp, UnaryOp::Log>{});
    case UnaryOp::Sqrt: return f(std::integral_constant<UnaryOp, UnaryOp::Sqrt>{});
    case UnaryOp::Rsqrt: return f(std::integral_constant<UnaryOp, UnaryOp::Rsqrt>{});
    case UnaryOp::Tanh: return f(std::integral_constant<UnaryOp, UnaryOp::Tanh>{});
    case UnaryOp::Sigmoid: return f(std::integral_constant<UnaryOp, UnaryOp::Sigmoid>{});
    case UnaryOp::Relu: return f(std::integral_constant<UnaryOp, UnaryOp::Relu>{});
    case UnaryOp::Gelu: return f(std::integral_constant<UnaryOp, UnaryOp::Gelu>{});
    case UnaryOp::Square: return f(std::integral_constant<UnaryOp, UnaryOp::Square>{});
    case UnaryOp::Abs: return f(std::integral_constant<UnaryOp, UnaryOp::Abs>{});
    case UnaryOp::Reciprocal: return f(std::integral_constant<UnaryOp, UnaryOp::Reciprocal>{});
  }
  KOLO_FAIL("unary: unknown op ", static_cast<int>(op));
}

template <typename F>
void with_binary_op(BinaryOp op, F&& f) {
  switch (op) {
    case BinaryOp::Add: return f(std::integral_constant<BinaryOp, BinaryOp::Add>{});
    case BinaryOp::Sub: return f(std::integral_constant<BinaryOp, BinaryOp::Sub>{});
    case BinaryOp::Mul: return f(std::integral_constant<BinaryOp, BinaryOp::Mul>{});
    case BinaryOp::Div: return f(std::integral_constant<BinaryOp, BinaryOp::Div>{});
    case BinaryOp::Max: return f(std::integral_constant<BinaryOp, BinaryOp::Max>{});
    case BinaryOp::Min: return f(std::integral_constant<BinaryOp, BinaryOp::Min>{});
    case BinaryOp::Eq: return f(std::integral_constant<BinaryOp, BinaryOp::Eq>{});
  }
  KOLO_FAIL("binary: unknown op ", static_cast<int>(op));
}

// fn(i0, i1) over [0, n) split among the threads (one call when n is small).
template <typename F>
void parallel_ranges(int64_t n, F&& fn) {
#pragma omp parallel if (n > 32768)
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    fn(n * t / nt, n * (t + 1) / nt);
  }
}

void cpu_unary(UnaryOp op, const Tensor& x, Tensor& out) {
  if (op == UnaryOp::Relu && x.dtype() == DType::F32 && x.is_contiguous() && out.is_contiguous() &&
      x.shape() == out.shape()) {
    const float* px = static_cast<const float*>(x.data_ptr());
    float* po = static_cast<float*>(out.data_ptr());
    parallel_ranges(out.numel(), [&](int64_t i0, int64_t i1) { cpu::relu_f32(px, po, i0, i1); });
    return;
  }
  dispatch_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using A = Acc<T>;
    const T* px = static_cast<const T*>(x.data_ptr());
    T* po = static_cast<T*>(out.data_ptr());
    if (x.is_contiguous() && out.is_contiguous() && x.shape() == out.shape()) {
      const int64_t n = out.numel();
      with_unary_op(op, [&](auto k) {
#pragma omp parallel for schedule(static) if (n > 32768)
        for (int64_t i = 0; i < n; ++i) po[i] = cast_to<T>(unary_fn<A>(k.value, static_cast<A>(px[i])));
      });
      return;
    }
    cpu::for_each_row(out.shape(), out.strides(), x.strides(),
                      [&](int64_t oo, int64_t ox, int64_t n, int64_t so, int64_t sx) {
                        for (int64_t i = 0; i < n; ++i)
                          po[oo + i * so] = cast_to<T>(unary_fn<A>(op, static_cast<A>(px[ox + i * sx])));
                      });
  });
}

void cpu_unary_backward(UnaryOp op, const Tensor& grad, const Tensor& x, const Tensor& y, Tensor& out) {
  KOLO_CHECK(grad.dtype() == x.dtype(), "unary backward: gradient ", grad.describe(), " for ", x.describe());
  Tensor gc = grad.contiguous(), xc = x.contiguous(), yc = y.contiguous();
  if (op == UnaryOp::Relu && x.dtype() == DType::F32) {
    const float* pg = static_cast<const float*>(gc.data_ptr());
    const float* px = static_cast<const float*>(xc.data_ptr());
    float* po = static_cast<float*>(out.data_ptr());
    parallel_ranges(out.numel(), [&](int64_t i0, int64_t i1) { cpu::relu_backward_f32(pg, px, po, i0, i1); });
    return;
  }
  dispatch_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using A = Acc<T>;
    const T* pg = static_cast<const T*>(gc.data_ptr());
    const T* px = static_cast<const T*>(xc.data_ptr());
    const T* py = static_cast<const T*>(yc.data_ptr());
    T* po = static_cast<T*>(out.data_ptr());
    const int64_t n = out.numel();
    with_unary_op(op, [&](auto k) {
#pragma omp parallel for schedule(static) if (n > 32768)
      for (int64_t i = 0; i < n; ++i)
        po[i] = cast_to<T>(static_cast<A>(pg[i]) * unary_grad<A>(k.value, static_cast<A>(px[i]), static_cast<A>(py[i])));
    });
  });
}

void cpu_binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  dispatch_dtype(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using A = Acc<T>;
    const T* pa = static_cast<const T*>(a.data_ptr());
    const T* pb = static_cast<const T*>(b.data_ptr());
    T* po = static_cast<T*>(out.data_ptr());
    if (a.is_contiguous() && b.is_contiguous() && a.shape() == out.shape() && b.shape() == out.shape()) {
      const int64_t n = out.numel();
      with_binary_op(op, [&](auto k) {
#pragma omp parallel for schedule(static) if (n > 32768)
        for (int64_t i = 0; i < n; ++i)
          po[i] = cast_to<T>(binary_fn<A>(k.value, static_cast<A>(pa[i]), static_cast<A>(pb[i])));
      });
      return;
    }
    with_binary_op(op, [&](auto k) {
      cpu::for_each_row3(out.shape(), out.strides(), a.strides(), b.strides(),
                         [&](int64_t oo, int64_t oa, int64_t ob, int64_t n, int64_t so, int64_t sa, int64_t sb) {
                           // Rows of unit stride (a bias row, a [N, C] slice) and rows against a broadcast
                           // scalar get loops the compiler can vectorise.
                           if (so == 1 && sa == 1 && (sb == 1 || sb == 0)) {
                             const T* ra = pa + oa;
                             const T* rb = pb + ob;
                             T* ro = po + oo;
                             if (sb == 1) {
                               for (int64_t i = 0; i < n; ++i)
                                 ro[i] = cast_to<T>(binary_fn<A>(k.value, static_cast<A>(ra[i]), static_cast<A>(rb[i])));
                             } else {
                               const A bv = static_cast<A>(rb[0]);
                               for (int64_t i = 0; i < n; ++i)
                                 ro[i] = cast_to<T>(binary_fn<A>(k.value, static_cast<A>(ra[i]), bv));
                             }
                             return;
                           }
                           for (int64_t i = 0; i < n; ++i)
                             po[oo + i * so] = cast_to<T>(binary_fn<A>(k.value, static_cast<A>(pa[oa + i * sa]),
                                                                       static_cast<A>(pb[ob + i * sb])));
                         });
    });
  });
}

void cpu_affine(const Tensor& x, double s, double t, Tensor& out) {
  dispatch_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using A = Acc<T>;
    const A as = static_cast<A>(s), at = static_cast<A>(t);
    const T* px = static_cast<const T*>(x.data_ptr());
    T* po = static_cast<T*>(out.data_ptr());
    cpu::for_each_row(out.shape(), out.strides(), x.strides(),
                      [&](int64_t oo, int64_t ox, int64_t n, int64_t so, int64_t sx) {
                        for (int64_t i = 0; i < n; ++i)
                          po[oo + i * so] = cast_to<T>(static_cast<A>(px[ox + i * sx]) * as + at);
                      });
  });
}

void cpu_axpy(Tensor& y, const Tensor& x, double alpha) {
  KOLO_CHECK(x.dtype() == y.dtype(), "axpy: dtype ", dtype_name(y.dtype()), " += ", dtype_name(x.dtype()));
  dispatch_dtype(y.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using A = Acc<T>;
    const A al = static_cast<A>(alpha);
    const T* px = static_cast<const T*>(x.data_ptr());
    T* py = static_cast<T*>(y.data_ptr());
    if (y.is_contiguous() && x.is_contiguous() && x.shape() == y.shape()) {
      const int64_t n = y.numel();
#pragma omp parallel for schedule(static) if (n > 32768)
      for (int64_t i = 0; i < n; ++i) py[i] = cast_to<T>(static_cast<A>(py[i]) + al * static_cast<A>(px[i]));
      return;
    }
    cpu::for_each_row(y.shape(), y.strides(), x.strides(),
                      [&](int64_t oy, int64_t ox, int64_t n, int64_t sy, int64_t sx) {
                        for (int64_t i = 0; i < n; ++i)
                          py[oy + i * sy] = cast_to<T>(static_cast<A>(py[oy + i * sy]) + al * static_cast<A>(px[ox + i * sx]));
                      });
  });
}

template <typename A>
inline A reduce_step(ReduceOp op, A acc, A v) {
  if (op == ReduceOp::Sum) return acc + v;
  if (op == ReduceOp::Max) return v > acc || std::isnan(static_cast<double>(v)) ? v : acc;
  return v < acc || std::isnan(static_cast<double>(v)) ? v : acc;
}

// Float sums accumulate in double: reductions over whole batches (losses, BN statistics) stay accurate.
template <typename T>
using RAcc = std::conditional_t<std::is_integral_v<T>, T, double>;

void cpu_reduce_rows(ReduceOp op, const Tensor& x, int64_t inner, Tensor& out) {
  dispatch_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using A = RAcc<T>;
    const T* px = static_cast<const T*>(x.data_ptr());
    T* po = static_cast<T*>(out.data_ptr());
    const int64_t rows = out.numel();
#pragma omp parallel for schedule(static) if (rows * inner > 32768)
    for (int64_t r = 0; r < rows; ++r) {
      A acc = reduce_identity<A>(op);
      const T* row = px + r * inner;
      for (int64_t i = 0; i < inner; ++i) acc = reduce_step<A>(op, acc, static_cast<A>(row[i]));
      if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>) po[r] = T(static_cast<float>(acc));
      else po[r] = static_cast<T>(acc);
    }
  });
}

void cpu_reduce_mid(ReduceOp op, const Tensor& x, int64_t outer, int64_t r, int64_t inner, Tensor& out) {
  dispatch_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using A = RAcc<T>;
    const T* px = static_cast<const T*>(x.data_ptr());
    T* po = static_cast<T*>(out.data_ptr());
    // Tasks are (outer, column tile) pairs so that a single outer slice (a bias gradient: outer 1, r rows,
    // inner features) still spreads over every thread; the accumulator tile lives on the stack.
    constexpr int64_t kTile = 256;
    const int64_t tiles = (inner + kTile - 1) / kTile;
#pragma omp parallel for schedule(static) if (outer * r * inner > 32768)
    for (int64_t task = 0; task < outer * tiles; ++task) {
      const int64_t o = task / tiles, i0 = (task % tiles) * kTile, w = std::min(kTile, inner - i0);
      A acc[kTile];
      for (int64_t i = 0; i < w; ++i) acc[i] = reduce_identity<A>(op);
      for (int64_t j = 0; j < r; ++j) {
        const T* row = px + (o * r + j) * inner + i0;
        for (int64_t i = 0; i < w; ++i) acc[i] = reduce_step<A>(op, acc[i], static_cast<A>(row[i]));
      }
      T* dst = po + o * inner + i0;
      for (int64_t i = 0; i < w; ++i) {
        if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>) dst[i] = T(static_cast<float>(acc[i]));
        else dst[i] = static_cast<T>(acc[i]);
      }
    }
  });
}

void cpu_argmax_last(const Tensor& x, Tensor& out) {
  const int64_t n = x.size(-1);
  const int64_t rows = out.numel();
  int64_t* po = out.data<int64_t>();
  dispatch_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using A = Acc<T>;
    const T* px = static_cast<const T*>(x.data_ptr());
#pragma omp parallel for schedule(static) if (rows * n > 32768)
    for (int64_t r = 0; r < rows; ++r) {
      int64_t best = 0;
      A bv = static_cast<A>(px[r * n]);
      for (int64_t i = 1; i < n; ++i) {
        const A v = static_cast<A>(px[r * n + i]);
        if (v > bv || (v != v && bv == bv)) {  // the first NaN wins, as PyTorch's argmax
          bv = v;
          best = i;
        }
      }
      po[r] = best;
    }
  });
}

bool cpu_all_finite(const Tensor& x) {
  bool ok = true;
  dispatch_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* px = static_cast<const T*>(x.data_ptr());
    const int64_t n = x.numel();
    int bad = 0;
#pragma omp parallel for reduction(+ : bad) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) bad += std::isfinite(static_cast<double>(static_cast<Acc<T>>(px[i]))) ? 0 : 1;
    ok = bad == 0;
  });
  return ok;
}

}  // namespace

KOLO_REGISTER_KERNEL(unary, CPU, cpu_unary);
KOLO_REGISTER_KERNEL(unary_backward, CPU, cpu_unary_backward);
KOLO_REGISTER_KERNEL(binary, CPU, cpu_binary);
KOLO_REGISTER_KERNEL(affine, CPU, cpu_affine);
KOLO_REGISTER_KERNEL(axpy, CPU, cpu_axpy);
KOLO_REGISTER_KERNEL(reduce_rows, CPU, cpu_reduce_rows);
KOLO_REGISTER_KERNEL(reduce_mid, CPU, cpu_reduce_mid);
KOLO_REGISTER_KERNEL(argmax_last, CPU, cpu_argmax_last);
KOLO_REGISTER_KERNEL(all_finite, CPU, cpu_all_finite);

}  // namespace kolo
