// CUDA elementwise kernels: unary (and its backward), binary, affine and axpy, all through the generic
// vectorised/strided map kernels. The op is a run-time switch inside the functor rather than a template
// parameter: it is uniform across a warp, costs nothing next to the memory traffic, and keeps the number
// of kernel instantiations (and nvcc time) at one per dtype.
#include "core/ops/cuda/elementwise_launch.h"
#include "core/ops/cuda/map_kernels.cuh"

namespace kolo::cuda {

namespace {

// Integers compute unary math in double (as the CPU's std:: calls promote them); floats in Acc.
template <typename T>
using UnaryAcc = std::conditional_t<std::is_integral_v<T>, double, Acc<T>>;

template <typename C>
__device__ __forceinline__ C unary_value(UnaryOp op, C x) {
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Exp: return exp(x);
    case UnaryOp::Log: return log(x);
    case UnaryOp::Sqrt: return sqrt(x);
    case UnaryOp::Rsqrt: return C(1) / sqrt(x);
    case UnaryOp::Tanh: return tanh(x);
    case UnaryOp::Sigmoid: return C(1) / (C(1) + exp(-x));
    case UnaryOp::Relu: return x < C(0) ? C(0) : x;  // NaN passes through, as on the CPU
    case UnaryOp::Gelu: return C(0.5) * x * (C(1) + erf(x * C(0.70710678118654752440)));
    case UnaryOp::Square: return x * x;
    case UnaryOp::Abs: return fabs(x);
    case UnaryOp::Reciprocal: return C(1) / x;
  }
  return x;
}

template <typename C>
__device__ __forceinline__ C unary_derivative(UnaryOp op, C x, C y) {
  switch (op) {
    case UnaryOp::Neg: return C(-1);
    case UnaryOp::Exp: return y;
    case UnaryOp::Log: return C(1) / x;
    case UnaryOp::Sqrt: return C(0.5) / y;
    case UnaryOp::Rsqrt: return C(-0.5) * y * y * y;
    case UnaryOp::Tanh: return C(1) - y * y;
    case UnaryOp::Sigmoid: return y * (C(1) - y);
    case UnaryOp::Relu: return x > C(0) ? C(1) : C(0);
    case UnaryOp::Gelu: {
      const C cdf = C(0.5) * (C(1) + erf(x * C(0.70710678118654752440)));
      const C pdf = exp(C(-0.5) * x * x) * C(0.39894228040143267794);
      return cdf + x * pdf;
    }
    case UnaryOp::Square: return C(2) * x;
    case UnaryOp::Abs: return x > C(0) ? C(1) : (x < C(0) ? C(-1) : C(0));
    case UnaryOp::Reciprocal: return -y * y;
  }
  return C(0);
}

template <typename T>
struct UnaryFn {
  UnaryOp op;
  __device__ T operator()(T x) const {
    using C = UnaryAcc<T>;
    return convert<T>(unary_value<C>(op, convert<C>(x)));
  }
};

template <typename T>
struct BinaryFn {
  BinaryOp op;
  __device__ T operator()(T a, T b) const {
    using A = Acc<T>;
    const A x = convert<A>(a), y = convert<A>(b);
    A r;
    switch (op) {
      case BinaryOp::Add: r = x + y; break;
      case BinaryOp::Sub: r = x - y; break;
      case BinaryOp::Mul: r = x * y; break;
      case BinaryOp::Div: r = x / y; break;
      case BinaryOp::Max: r = x != x || x > y ? x : y; break;  // NaN in either gives NaN, as on the CPU
      case BinaryOp::Min: r = x != x || x < y ? x : y; break;
      case BinaryOp::Eq: r = x == y ? A(1) : A(0); break;
      default: r = x; break;
    }
    return convert<T>(r);
  }
};

template <typename T>
struct AffineFn {
  Acc<T> scale, shift;
  __device__ T operator()(T x) const { return convert<T>(convert<Acc<T>>(x) * scale + shift); }
};

template <typename T>
struct AxpyFn {
  Acc<T> alpha;
  __device__ T operator()(T y, T x) const { return convert<T>(convert<Acc<T>>(y) + alpha * convert<Acc<T>>(x)); }
};

template <typename T>
__global__ void unary_backward_kernel(UnaryOp op, T* out, const T* grad, const T* x, const T* y, int64_t n) {
  using C = UnaryAcc<T>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = convert<T>(convert<C>(grad[i]) * unary_derivative<C>(op, convert<C>(x[i]), convert<C>(y[i])));
}

}  // namespace

void launch_unary(UnaryOp op, void* out, const void* x, DType dtype, const StridedIndexer<2>& ix, int64_t n,
                  cudaStream_t stream) {
  dispatch_device_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    map1(static_cast<T*>(out), static_cast<const T*>(x), ix, n, UnaryFn<T>{op}, stream);
  });
}

void launch_unary_backward(UnaryOp op, void* out, const void* grad, const void* x, const void* y, DType dtype,
                           int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  dispatch_device_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    unary_backward_kernel<<<grid_for(n, kMapThreads), kMapThreads, 0, stream>>>(
        op, static_cast<T*>(out), static_cast<const T*>(grad), static_cast<const T*>(x), static_cast<const T*>(y), n);
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

void launch_binary(BinaryOp op, void* out, const void* a, const void* b, DType dtype, const StridedIndexer<3>& ix,
                   int64_t n, cudaStream_t stream) {
  dispatch_device_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    map2(static_cast<T*>(out), static_cast<const T*>(a), static_cast<const T*>(b), ix, n, BinaryFn<T>{op}, stream);
  });
}

void launch_affine(void* out, const void* x, DType dtype, double scale, double shift, const StridedIndexer<2>& ix,
                   int64_t n, cudaStream_t stream) {
  dispatch_device_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = Acc<T>;
    map1(static_cast<T*>(out), static_cast<const T*>(x), ix, n,
         AffineFn<T>{static_cast<A>(scale), static_cast<A>(shift)}, stream);
  });
}

void launch_axpy(void* y, const void* x, DType dtype, double alpha, const StridedIndexer<3>& ix, int64_t n,
                 cudaStream_t stream) {
  dispatch_device_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* py = static_cast<T*>(y);
    map2(py, static_cast<const T*>(py), static_cast<const T*>(x), ix, n, AxpyFn<T>{static_cast<Acc<T>>(alpha)}, stream);
  });
}

}  // namespace kolo::cuda
