// Channels-last max pooling (see pool_nhwc_launch.h). One thread owns V adjacent channels of one output
// (forward) or input (backward) position, so every load and store is one vector over the channel dim.
#include <type_traits>

#include "core/device/cuda/cuda_check.h"
#include "core/ops/cuda/cuda_dtype.cuh"
#include "core/ops/cuda/pool_nhwc_launch.h"

namespace kolo::cuda {
namespace {

constexpr int kThreads = 256;

template <int V>
struct alignas(V) Bytes {
  uint8_t v[V];
};

// Position (n, row, col) and first channel of vector i of an [n, h, w, c] tensor read V channels at a time.
struct Pixel {
  int64_t n, row, col, c0;
};

template <int V>
__device__ __forceinline__ Pixel pixel_of(int64_t i, int64_t h, int64_t w, int64_t c) {
  const int64_t cv = c / V;
  int64_t r = i / cv;
  const int64_t col = r % w;
  r /= w;
  return {r / h, r % h, col, (i % cv) * V};
}

template <typename T, int V>
__global__ void max_pool_forward_kernel(MaxPoolNhwcShape s, const T* x, T* y, uint8_t* argmax) {
  const int64_t total = s.n * s.oh * s.ow * (s.c / V);
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const Pixel px = pixel_of<V>(i, s.oh, s.ow, s.c);
    const int64_t n = px.n, oy = px.row, ox = px.col, c0 = px.c0;
    const int64_t y0 = oy * s.sh - s.ph, x0 = ox * s.sw - s.pw;
    float best[V];
    int pos[V];
#pragma unroll
    for (int k = 0; k < V; ++k) pos[k] = -1;
    for (int dy = 0; dy < s.kh; ++dy) {
      const int64_t iy = y0 + dy;
      if (iy < 0 || iy >= s.h) continue;
      for (int dx = 0; dx < s.kw; ++dx) {
        const int64_t ix = x0 + dx;
        if (ix < 0 || ix >= s.w) continue;
        const Vec<T, V> u = *reinterpret_cast<const Vec<T, V>*>(x + ((n * s.h + iy) * s.w + ix) * s.c + c0);
        const int p = dy * s.kw + dx;
#pragma unroll
        for (int k = 0; k < V; ++k) {
          const float v = convert<float>(u.v[k]);
          // The CPU kernels' rule: the first maximum, except that a NaN replaces a number.
          if (pos[k] < 0 || v > best[k] || (v != v && best[k] == best[k])) {
            best[k] = v;
            pos[k] = p;
          }
        }
      }
    }
    Vec<T, V> out;
    Bytes<V> idx;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      out.v[k] = convert<T>(pos[k] < 0 ? -INFINITY : best[k]);
      idx.v[k] = static_cast<uint8_t>(pos[k] < 0 ? 255 : pos[k]);
    }
    const int64_t o = ((n * s.oh + oy) * s.ow + ox) * s.c + c0;
    *reinterpret_cast<Vec<T, V>*>(y + o) = out;
    if (argmax) *reinterpret_cast<Bytes<V>*>(argmax + o) = idx;
  }
}

// Output rows (or columns) whose window covers input row i: o*stride - pad <= i <= o*stride - pad + k - 1.
__device__ __forceinline__ void covering(int64_t i, int k, int stride, int pad, int64_t out, int64_t& lo,
                                         int64_t& hi) {
  const int64_t a = i + pad - k + 1;
  lo = a <= 0 ? 0 : (a + stride - 1) / stride;
  hi = (i + pad) / stride;
  if (hi > out - 1) hi = out - 1;
}

template <typename T, int V>
__global__ void max_pool_backward_kernel(MaxPoolNhwcShape s, const T* dy, const uint8_t* argmax, T* dx) {
  const int64_t total = s.n * s.h * s.w * (s.c / V);
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const Pixel px = pixel_of<V>(i, s.h, s.w, s.c);
    const int64_t n = px.n, iy = px.row, ix = px.col, c0 = px.c0;
    int64_t oy0, oy1, ox0, ox1;
    covering(iy, s.kh, s.sh, s.ph, s.oh, oy0, oy1);
    covering(ix, s.kw, s.sw, s.pw, s.ow, ox0, ox1);
    float acc[V];
#pragma unroll
    for (int k = 0; k < V; ++k) acc[k] = 0.0f;
    for (int64_t oy = oy0; oy <= oy1; ++oy)
      for (int64_t ox = ox0; ox <= ox1; ++ox) {
        const int p = static_cast<int>((iy - (oy * s.sh - s.ph)) * s.kw + (ix - (ox * s.sw - s.pw)));
        const int64_t o = ((n * s.oh + oy) * s.ow + ox) * s.c + c0;
        const Bytes<V> idx = *reinterpret_cast<const Bytes<V>*>(argmax + o);
        bool any = false;
#pragma unroll
        for (int k = 0; k < V; ++k) any = any || idx.v[k] == p;
        if (!any) continue;
        const Vec<T, V> g = *reinterpret_cast<const Vec<T, V>*>(dy + o);
#pragma unroll
        for (int k = 0; k < V; ++k)
          if (idx.v[k] == p) acc[k] += convert<float>(g.v[k]);
      }
    Vec<T, V> out;
#pragma unroll
    for (int k = 0; k < V; ++k) out.v[k] = convert<T>(acc[k]);
    *reinterpret_cast<Vec<T, V>*>(dx + ((n * s.h + iy) * s.w + ix) * s.c + c0) = out;
  }
}

constexpr const char* kOp = "max_pool2d (channels-last kernels)";

// The widest vector over channels that c and every pointer allow (the argmax bytes align with the data).
template <typename T>
int width_for(const MaxPoolNhwcShape& s, std::initializer_list<const void*> ptrs) {
  int w = vec_width<T>();
  auto fits = [&](int v) {
    if (s.c % v != 0) return false;
    for (const void* p : ptrs)
      if (p && reinterpret_cast<uintptr_t>(p) % (v * sizeof(T) < 16 ? v * sizeof(T) : 16) != 0) return false;
    return true;
  };
  while (w > 1 && !fits(w)) w /= 2;
  return w;
}

// fn(std::integral_constant<int, V>) for the vector width v (8, 4, 2 or 1).
template <typename Fn>
void with_width(int v, Fn&& fn) {
  if (v == 8) fn(std::integral_constant<int, 8>{});
  else if (v == 4) fn(std::integral_constant<int, 4>{});
  else if (v == 2) fn(std::integral_constant<int, 2>{});
  else fn(std::integral_constant<int, 1>{});
}

}  // namespace

bool max_pool_nhwc_supported(DType t, const MaxPoolNhwcShape& s) {
  return (t == DType::F32 || t == DType::BF16 || t == DType::F16) && s.kh > 0 && s.kw > 0 && s.kh * s.kw <= 255;
}

void launch_max_pool_nhwc_forward(DType t, const MaxPoolNhwcShape& s, const void* x, void* y, uint8_t* argmax,
                                  cudaStream_t stream) {
  if (s.n * s.oh * s.ow * s.c == 0) return;
  dispatch_vector_float_dtype(t, kOp, [&](auto tag) {
    using T = decltype(tag);
    const int v = width_for<T>(s, {x, y});
    const int64_t work = s.n * s.oh * s.ow * (s.c / v);
    with_width(v, [&](auto vt) {
      constexpr int V = decltype(vt)::value;
      max_pool_forward_kernel<T, V><<<grid_for(work, kThreads), kThreads, 0, stream>>>(
          s, static_cast<const T*>(x), static_cast<T*>(y), argmax);
    });
    KOLO_CUDA_CHECK_LAUNCH();
  });
}

void launch_max_pool_nhwc_backward(DType t, const MaxPoolNhwcShape& s, const void* dy, const uint8_t* argmax,
                                   void* dx, cudaStream_t stream) {
  if (s.n * s.h * s.w * s.c == 0) return;
  dispatch_vector_float_dtype(t, kOp, [&](auto tag) {
    using T = decltype(tag);
    const int v = width_for<T>(s, {dy, dx});
    const int64_t work = s.n * s.h * s.w * (s.c / v);
    with_width(v, [&](auto vt) {
      constexpr int V = decltype(vt)::value;
      max_pool_backward_kernel<T, V><<<grid_for(work, kThreads), kThreads, 0, stream>>>(
          s, static_cast<const T*>(dy), argmax, static_cast<T*>(dx));
    });
    KOLO_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace kolo::cuda
