// Channels-last training batch norm kernels (see bn_nhwc_launch.h).
//
// The two reduction passes use a 2-D grid: blockIdx.x tiles the channels (each thread owns V adjacent channels
// and reads them with one vector load per row, so a warp reads whole rows), blockIdx.y strides over rows.
// Each block leaves one partial per channel; a one-thread-per-channel pass merges the partials in block order
// and turns them into per-channel coefficients, so the elementwise passes are one fused multiply-add.
#include <algorithm>

#include "core/device/cuda/cuda_check.h"
#include "core/ops/cuda/bn_nhwc_launch.h"
#include "core/ops/cuda/cuda_dtype.cuh"

namespace kolo::cuda {
namespace {

constexpr int kThreads = 256;

struct Geometry {
  int tx, ty;  // block: tx threads across channel vectors, ty across rows
  int gx, gy;  // grid
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Upper bound of gy for any vector width (the workspace is sized with it).
int64_t max_row_blocks(int64_t rows) { return std::max<int64_t>(1, std::min<int64_t>(rows, 4 * sm_count())); }

Geometry geometry(const BnNhwcShape& s, int v) {
  const int64_t cv = s.c / v;
  int tx = 1;
  while (tx < 32 && tx < cv) tx *= 2;
  Geometry g{tx, kThreads / tx, static_cast<int>(ceil_div(cv, tx)), 1};
  const int64_t want = std::max<int64_t>(1, 4 * sm_count() / g.gx);
  g.gy = static_cast<int>(std::min({ceil_div(s.rows, g.ty), want, max_row_blocks(s.rows)}));
  return g;
}

// Rows visited by a thread starting at `start` with stride `stride`.
__device__ __forceinline__ float rows_seen(int64_t rows, int64_t start, int64_t stride) {
  return start < rows ? static_cast<float>((rows - 1 - start) / stride + 1) : 0.0f;
}

// Per-block statistics of V channels per thread, merged over threadIdx.y in order (Chan et al.'s update).
template <typename T, int V>
__global__ void stats_partial_kernel(const T* x, int64_t rows, int64_t c, float* part_mean, float* part_m2) {
  extern __shared__ float smem[];
  const int tx = blockDim.x, ty = blockDim.y;
  float* sh_mean = smem;
  float* sh_m2 = smem + ty * tx * V;
  const int64_t vcol = static_cast<int64_t>(blockIdx.x) * tx + threadIdx.x;
  const bool active = vcol < c / V;
  const int64_t stride = static_cast<int64_t>(gridDim.y) * ty;
  // Sums shifted by the thread's first value (no division per element, and no cancellation as long as the
  // shift is near the mean), turned into (mean, m2) for the ordered merge.
  float mean[V], m2[V];
#pragma unroll
  for (int k = 0; k < V; ++k) mean[k] = m2[k] = 0.0f;
  const int64_t first = static_cast<int64_t>(blockIdx.y) * ty + threadIdx.y;
  if (active && first < rows) {
    float shift[V], s1[V], s2[V];
    const Vec<T, V> v0 = reinterpret_cast<const Vec<T, V>*>(x + first * c)[vcol];
#pragma unroll
    for (int k = 0; k < V; ++k) {
      shift[k] = convert<float>(v0.v[k]);
      s1[k] = s2[k] = 0.0f;
    }
    for (int64_t r = first + stride; r < rows; r += stride) {
      const Vec<T, V> v = reinterpret_cast<const Vec<T, V>*>(x + r * c)[vcol];
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const float d = convert<float>(v.v[k]) - shift[k];
        s1[k] += d;
        s2[k] = fmaf(d, d, s2[k]);
      }
    }
    const float n = rows_seen(rows, first, stride);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      mean[k] = shift[k] + s1[k] / n;
      m2[k] = fmaxf(s2[k] - s1[k] * s1[k] / n, 0.0f);
    }
  }
  const int slot = (threadIdx.y * tx + threadIdx.x) * V;
#pragma unroll
  for (int k = 0; k < V; ++k) {
    sh_mean[slot + k] = mean[k];
    sh_m2[slot + k] = m2[k];
  }
  __syncthreads();
  if (threadIdx.y != 0 || !active) return;
  float n = rows_seen(rows, static_cast<int64_t>(blockIdx.y) * ty, stride);
  for (int j = 1; j < ty; ++j) {
    const float nb = rows_seen(rows, static_cast<int64_t>(blockIdx.y) * ty + j, stride);
    if (nb == 0.0f) continue;
    const float nab = n + nb;
    const int other = (j * tx + threadIdx.x) * V;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float d = sh_mean[other + k] - mean[k];
      mean[k] += d * nb / nab;
      m2[k] += sh_m2[other + k] + d * d * n * nb / nab;
    }
    n = nab;
  }
  const int64_t base = static_cast<int64_t>(blockIdx.y) * c + vcol * V;
#pragma unroll
  for (int k = 0; k < V; ++k) {
    part_mean[base + k] = mean[k];
    part_m2[base + k] = m2[k];
  }
}

// The final passes merge the gy partials of each channel with a 32 x 32 block: threadIdx.x picks the channel
// (coalesced reads of a partial row), threadIdx.y strides over the partials, then row 0 merges the 32 lanes
// in order. A thread walking all gy partials alone was latency-bound (~0.3 ms per call at gy = 528).
constexpr int kFinalLanes = 32;

struct Moments {
  float n, mean, m2;
};

__device__ __forceinline__ Moments merge(Moments a, Moments b) {
  if (b.n == 0.0f) return a;
  const float n = a.n + b.n, d = b.mean - a.mean;
  return {n, a.mean + d * b.n / n, a.m2 + b.m2 + d * d * a.n * b.n / n};
}

// Writes the saved statistics, the running statistics and the apply pass's scale/shift.
template <typename P, typename R>
__global__ void stats_final_kernel(int64_t rows, int64_t c, int gy, int ty, const float* part_mean,
                                   const float* part_m2, const P* w, const P* b, R* rmean, R* rvar, float momentum,
                                   float eps, float* save_mean, float* save_invstd, float* scale, float* shift) {
  __shared__ Moments lanes[kFinalLanes][kFinalLanes + 1];
  const int64_t ch = static_cast<int64_t>(blockIdx.x) * kFinalLanes + threadIdx.x;
  const int64_t stride_rows = static_cast<int64_t>(gy) * ty;
  Moments m{0.0f, 0.0f, 0.0f};
  if (ch < c) {
    for (int j = threadIdx.y; j < gy; j += kFinalLanes) {
      // Rows seen by block-row j: ty per full stride of the grid, plus its share of the last partial stride.
      const int64_t tail = rows % stride_rows - static_cast<int64_t>(j) * ty;
      const float nb = static_cast<float>((rows / stride_rows) * ty + (tail < 0 ? 0 : tail > ty ? ty : tail));
      m = merge(m, {nb, part_mean[j * c + ch], part_m2[j * c + ch]});
    }
  }
  lanes[threadIdx.y][threadIdx.x] = m;
  __syncthreads();
  if (threadIdx.y != 0 || ch >= c) return;
  for (int j = 1; j < kFinalLanes; ++j) m = merge(m, lanes[j][threadIdx.x]);
  const float var = m.m2 / static_cast<float>(rows);
  const float invstd = rsqrtf(var + eps);
  save_mean[ch] = m.mean;
  save_invstd[ch] = invstd;
  if (rmean) {
    const float unbiased = m.m2 / static_cast<float>(rows - 1);
    rmean[ch] = convert<R>((1.0f - momentum) * convert<float>(rmean[ch]) + momentum * m.mean);
    rvar[ch] = convert<R>((1.0f - momentum) * convert<float>(rvar[ch]) + momentum * unbiased);
  }
  const float sc = invstd * (w ? convert<float>(w[ch]) : 1.0f);
  scale[ch] = sc;
  shift[ch] = (b ? convert<float>(b[ch]) : 0.0f) - m.mean * sc;
}

// Whether relu(round(x * scale + shift)) > 0, computed as apply_kernel computes it: the backward of a
// batch norm + ReLU without residual takes its mask from x instead of reading the output.
template <typename T>
__device__ __forceinline__ bool relu_passes(float scale, float shift, T x) {
  return convert<float>(convert<T>(fmaf(scale, convert<float>(x), shift))) > 0.0f;
}

// y = relu?(round(x * scale + shift) [+ residual]) over [rows, c] flattened into V-wide vectors. The batch-norm
// result is rounded to T before the residual add, as the unfused composite does.
template <typename T, int V>
__global__ void apply_kernel(int64_t vectors, int64_t c, const T* x, const T* residual, bool relu,
                             const float* scale, const float* shift, T* y) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < vectors;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ch0 = (i * V) % c;
    const Vec<T, V> u = reinterpret_cast<const Vec<T, V>*>(x)[i];
    Vec<T, V> r;
    if (residual) r = reinterpret_cast<const Vec<T, V>*>(residual)[i];
    Vec<T, V> o;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      float v = convert<float>(convert<T>(fmaf(scale[ch0 + k], convert<float>(u.v[k]), shift[ch0 + k])));
      if (residual) v = convert<float>(convert<T>(v + convert<float>(r.v[k])));
      o.v[k] = convert<T>(relu ? fmaxf(v, 0.0f) : v);
    }
    reinterpret_cast<Vec<T, V>*>(y)[i] = o;
  }
}

// dz = dy masked by y > 0 when y is given (the ReLU's gradient), else dy; dx = a*dz + bx*x + d per channel;
// dresidual = dz when requested. With scale/shift instead of y (no residual), the mask is recomputed from x.
template <typename T, int V>
__global__ void dx_kernel(int64_t vectors, int64_t c, const T* dy, const T* y, const T* x, const float* scale,
                          const float* shift, const float* a, const float* bx, const float* d, T* dx, T* dresidual) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < vectors;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ch0 = (i * V) % c;
    Vec<T, V> g = reinterpret_cast<const Vec<T, V>*>(dy)[i];
    const Vec<T, V> u = reinterpret_cast<const Vec<T, V>*>(x)[i];
    if (y) {
      const Vec<T, V> m = reinterpret_cast<const Vec<T, V>*>(y)[i];
#pragma unroll
      for (int k = 0; k < V; ++k)
        if (!(convert<float>(m.v[k]) > 0.0f)) g.v[k] = convert<T>(0.0f);
      if (dresidual) reinterpret_cast<Vec<T, V>*>(dresidual)[i] = g;
    } else if (scale) {
#pragma unroll
      for (int k = 0; k < V; ++k)
        if (!relu_passes<T>(scale[ch0 + k], shift[ch0 + k], u.v[k])) g.v[k] = convert<T>(0.0f);
    }
    if (!dx) continue;
    Vec<T, V> o;
#pragma unroll
    for (int k = 0; k < V; ++k)
      o.v[k] = convert<T>(a[ch0 + k] * convert<float>(g.v[k]) + bx[ch0 + k] * convert<float>(u.v[k]) + d[ch0 + k]);
    reinterpret_cast<Vec<T, V>*>(dx)[i] = o;
  }
}

// Per-block sums of dz and dz * (x - mean) for V channels per thread (dz = dy, masked by y > 0 when y is
// given, or by relu_passes when scale/shift are), merged over threadIdx.y in order.
template <typename T, int V>
__global__ void grad_partial_kernel(const T* dy, const T* y, const T* x, const float* mean, const float* scale,
                                    const float* shift, int64_t rows, int64_t c, float* part_dy, float* part_dyx) {
  extern __shared__ float smem[];
  const int tx = blockDim.x, ty = blockDim.y;
  float* sh_dy = smem;
  float* sh_dyx = smem + ty * tx * V;
  const int64_t vcol = static_cast<int64_t>(blockIdx.x) * tx + threadIdx.x;
  const bool active = vcol < c / V;
  const int64_t stride = static_cast<int64_t>(gridDim.y) * ty;
  float sdy[V], sdyx[V], mu[V], sc[V], sh[V];
#pragma unroll
  for (int k = 0; k < V; ++k) sdy[k] = sdyx[k] = 0.0f;
  if (active) {
#pragma unroll
    for (int k = 0; k < V; ++k) {
      mu[k] = mean[vcol * V + k];
      sc[k] = scale ? scale[vcol * V + k] : 0.0f;
      sh[k] = scale ? shift[vcol * V + k] : 0.0f;
    }
    for (int64_t r = static_cast<int64_t>(blockIdx.y) * ty + threadIdx.y; r < rows; r += stride) {
      const Vec<T, V> g = reinterpret_cast<const Vec<T, V>*>(dy + r * c)[vcol];
      const Vec<T, V> v = reinterpret_cast<const Vec<T, V>*>(x + r * c)[vcol];
      Vec<T, V> m;
      if (y) m = reinterpret_cast<const Vec<T, V>*>(y + r * c)[vcol];
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const bool off = y ? !(convert<float>(m.v[k]) > 0.0f) : scale && !relu_passes<T>(sc[k], sh[k], v.v[k]);
        const float gv = off ? 0.0f : convert<float>(g.v[k]);
        sdy[k] += gv;
        sdyx[k] += gv * (convert<float>(v.v[k]) - mu[k]);
      }
    }
  }
  const int slot = (threadIdx.y * tx + threadIdx.x) * V;
#pragma unroll
  for (int k = 0; k < V; ++k) {
    sh_dy[slot + k] = sdy[k];
    sh_dyx[slot + k] = sdyx[k];
  }
  __syncthreads();
  if (threadIdx.y != 0 || !active) return;
  for (int j = 1; j < ty; ++j) {
    const int other = (j * tx + threadIdx.x) * V;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      sdy[k] += sh_dy[other + k];
      sdyx[k] += sh_dyx[other + k];
    }
  }
  const int64_t base = static_cast<int64_t>(blockIdx.y) * c + vcol * V;
#pragma unroll
  for (int k = 0; k < V; ++k) {
    part_dy[base + k] = sdy[k];
    part_dyx[base + k] = sdyx[k];
  }
}

// Parameter gradients and the dx pass's coefficients: dx = a*dy + bx*x + d with
// a = w*invstd, bx = -w*invstd^3*sum(dy*(x-mean))/rows, d = -a*sum(dy)/rows - bx*mean.
template <typename P>
__global__ void grad_final_kernel(int64_t rows, int64_t c, int gy, const float* part_dy, const float* part_dyx,
                                  const P* w, const float* mean, const float* invstd, P* dweight, P* dbias,
                                  float* a, float* bx, float* d) {
  __shared__ float lane_dy[kFinalLanes][kFinalLanes + 1];
  __shared__ float lane_dyx[kFinalLanes][kFinalLanes + 1];
  const int64_t ch = static_cast<int64_t>(blockIdx.x) * kFinalLanes + threadIdx.x;
  float sdy = 0.0f, sdyx = 0.0f;
  if (ch < c) {
    for (int j = threadIdx.y; j < gy; j += kFinalLanes) {
      sdy += part_dy[j * c + ch];
      sdyx += part_dyx[j * c + ch];
    }
  }
  lane_dy[threadIdx.y][threadIdx.x] = sdy;
  lane_dyx[threadIdx.y][threadIdx.x] = sdyx;
  __syncthreads();
  if (threadIdx.y != 0 || ch >= c) return;
  for (int j = 1; j < kFinalLanes; ++j) {
    sdy += lane_dy[j][threadIdx.x];
    sdyx += lane_dyx[j][threadIdx.x];
  }
  const float is = invstd[ch];
  if (dbias) dbias[ch] = convert<P>(sdy);
  if (dweight) dweight[ch] = convert<P>(sdyx * is);
  const float wa = (w ? convert<float>(w[ch]) : 1.0f) * is;
  const float m = static_cast<float>(rows);
  const float bcoef = -wa * is * is * sdyx / m;
  a[ch] = wa;
  bx[ch] = bcoef;
  d[ch] = -wa * sdy / m - bcoef * mean[ch];
}

// The forward's apply coefficients from the saved statistics, as stats_final_kernel made them.
template <typename P>
__global__ void affine_kernel(int64_t c, const P* w, const P* b, const float* mean, const float* invstd, float* scale,
                              float* shift) {
  const int64_t ch = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (ch >= c) return;
  const float sc = invstd[ch] * (w ? convert<float>(w[ch]) : 1.0f);
  scale[ch] = sc;
  shift[ch] = (b ? convert<float>(b[ch]) : 0.0f) - mean[ch] * sc;
}

dim3 final_grid(int64_t c) { return dim3(static_cast<unsigned>(ceil_div(c, kFinalLanes))); }
dim3 final_block() { return dim3(kFinalLanes, kFinalLanes); }

struct Workspace {
  float *part1, *part2, *c1, *c2, *c3, *c4, *c5;
};

Workspace carve(void* ws, const BnNhwcShape& s) {
  float* f = static_cast<float*>(ws);
  const int64_t parts = max_row_blocks(s.rows) * s.c;
  float* c = f + 2 * parts;
  return {f, f + parts, c, c + s.c, c + 2 * s.c, c + 3 * s.c, c + 4 * s.c};
}

template <typename T>
int vector_width(const BnNhwcShape& s, std::initializer_list<const void*> ptrs) {
  constexpr int w = vec_width<T>();
  if (s.c % w != 0) return 1;
  for (const void* p : ptrs)
    if (p && !aligned16(p)) return 1;
  return w;
}

// Calls fn(P{}) with P = the data type T when `param_t` is the data dtype, float when it is F32.
template <typename T, typename Fn>
void dispatch_param(DType data_t, DType param_t, const char* what, Fn&& fn) {
  if (param_t == data_t) {
    fn(T{});
  } else {
    KOLO_CHECK(param_t == DType::F32, "batch_norm: ", what, " must be f32 or the input's dtype ",
               dtype_name(data_t), ", got ", dtype_name(param_t));
    fn(float{});
  }
}

template <typename Fn>
void dispatch_half_or_float(DType t, Fn&& fn) {
  switch (t) {
    case DType::F32: fn(float{}); return;
    case DType::BF16: fn(__nv_bfloat16{}); return;
    case DType::F16: fn(__half{}); return;
    default: KOLO_FAIL("batch_norm (channels-last kernels) needs f32, bf16 or f16 data, got ", dtype_name(t));
  }
}

template <typename T, int V>
void launch_apply(const BnNhwcShape& s, const T* x, const T* residual, bool relu, const float* scale,
                  const float* shift, T* y, cudaStream_t stream) {
  const int64_t vectors = s.rows * s.c / V;
  apply_kernel<T, V><<<grid_for(vectors, kThreads), kThreads, 0, stream>>>(vectors, s.c, x, residual, relu, scale,
                                                                            shift, y);
}

template <typename T, int V>
void launch_dx(const BnNhwcShape& s, const T* dy, const T* y, const T* x, const float* scale, const float* shift,
               const Workspace& ws, T* dx, T* dresidual, cudaStream_t stream) {
  const int64_t vectors = s.rows * s.c / V;
  dx_kernel<T, V><<<grid_for(vectors, kThreads), kThreads, 0, stream>>>(vectors, s.c, dy, y, x, scale, shift, ws.c1,
                                                                         ws.c2, ws.c3, dx, dresidual);
}

}  // namespace

size_t bn_nhwc_workspace_bytes(const BnNhwcShape& s) {
  return static_cast<size_t>(2 * max_row_blocks(s.rows) * s.c + 5 * s.c) * sizeof(float);
}

void launch_bn_nhwc_forward(DType t, const BnNhwcShape& s, const void* x, DType param_t, const void* w,
                            const void* b, DType running_t, void* running_mean, void* running_var, double momentum,
                            double eps, const void* residual, bool relu, void* y, float* save_mean,
                            float* save_invstd, void* workspace, cudaStream_t stream) {
  if (s.rows == 0 || s.c == 0) return;
  const Workspace ws = carve(workspace, s);
  dispatch_half_or_float(t, [&](auto tag) {
    using T = decltype(tag);
    const int v = vector_width<T>(s, {x, y, residual});
    const Geometry g = geometry(s, v);
    const size_t smem = 2 * static_cast<size_t>(kThreads) * v * sizeof(float);
    const dim3 block(g.tx, g.ty), grid(g.gx, g.gy);
    if (v == vec_width<T>()) {
      stats_partial_kernel<T, vec_width<T>()><<<grid, block, smem, stream>>>(static_cast<const T*>(x), s.rows, s.c,
                                                                             ws.part1, ws.part2);
    } else {
      stats_partial_kernel<T, 1><<<grid, block, smem, stream>>>(static_cast<const T*>(x), s.rows, s.c, ws.part1,
                                                                ws.part2);
    }
    KOLO_CUDA_CHECK_LAUNCH();
    dispatch_param<T>(t, param_t, "affine parameters", [&](auto ptag) {
      using P = decltype(ptag);
      dispatch_param<T>(t, running_t, "running statistics", [&](auto rtag) {
        using R = decltype(rtag);
        stats_final_kernel<P, R><<<final_grid(s.c), final_block(), 0, stream>>>(
            s.rows, s.c, g.gy, g.ty, ws.part1, ws.part2, static_cast<const P*>(w), static_cast<const P*>(b),
            static_cast<R*>(running_mean), static_cast<R*>(running_var), static_cast<float>(momentum),
            static_cast<float>(eps), save_mean, save_invstd, ws.c1, ws.c2);
      });
    });
    KOLO_CUDA_CHECK_LAUNCH();
    const T* r = static_cast<const T*>(residual);
    if (v == vec_width<T>()) {
      launch_apply<T, vec_width<T>()>(s, static_cast<const T*>(x), r, relu, ws.c1, ws.c2, static_cast<T*>(y), stream);
    } else {
      launch_apply<T, 1>(s, static_cast<const T*>(x), r, relu, ws.c1, ws.c2, static_cast<T*>(y), stream);
    }
    KOLO_CUDA_CHECK_LAUNCH();
  });
}

void launch_bn_nhwc_backward(DType t, const BnNhwcShape& s, const void* dy, const void* y, bool relu_from_x,
                             const void* x, DType param_t, const void* w, const void* b, const float* save_mean,
                             const float* save_invstd, void* dx, void* dweight, void* dbias, void* dresidual,
                             void* workspace, cudaStream_t stream) {
  if (s.rows == 0 || s.c == 0) return;
  const Workspace ws = carve(workspace, s);
  KOLO_CHECK(!relu_from_x || (!y && !dresidual), "batch_norm backward: a ReLU mask from x has no output or residual");
  dispatch_half_or_float(t, [&](auto tag) {
    using T = decltype(tag);
    const int v = vector_width<T>(s, {dy, y, x, dx, dresidual});
    const Geometry g = geometry(s, v);
    const size_t smem = 2 * static_cast<size_t>(kThreads) * v * sizeof(float);
    const dim3 block(g.tx, g.ty), grid(g.gx, g.gy);
    const float* scale = relu_from_x ? ws.c4 : nullptr;
    const float* shift = relu_from_x ? ws.c5 : nullptr;
    if (relu_from_x) {
      dispatch_param<T>(t, param_t, "affine parameters", [&](auto ptag) {
        using P = decltype(ptag);
        affine_kernel<P><<<static_cast<unsigned>(ceil_div(s.c, kThreads)), kThreads, 0, stream>>>(
            s.c, static_cast<const P*>(w), static_cast<const P*>(b), save_mean, save_invstd, ws.c4, ws.c5);
      });
      KOLO_CUDA_CHECK_LAUNCH();
    }
    const T* yt = static_cast<const T*>(y);
    const T* dyt = static_cast<const T*>(dy);
    const T* xt = static_cast<const T*>(x);
    if (v == vec_width<T>()) {
      grad_partial_kernel<T, vec_width<T>()><<<grid, block, smem, stream>>>(dyt, yt, xt, save_mean, scale, shift,
                                                                            s.rows, s.c, ws.part1, ws.part2);
    } else {
      grad_partial_kernel<T, 1><<<grid, block, smem, stream>>>(dyt, yt, xt, save_mean, scale, shift, s.rows, s.c,
                                                               ws.part1, ws.part2);
    }
    KOLO_CUDA_CHECK_LAUNCH();
    dispatch_param<T>(t, param_t, "affine parameters", [&](auto ptag) {
      using P = decltype(ptag);
      grad_final_kernel<P><<<final_grid(s.c), final_block(), 0, stream>>>(
          s.rows, s.c, g.gy, ws.part1, ws.part2, static_cast<const P*>(w), save_mean, save_invstd,
          static_cast<P*>(dweight), static_cast<P*>(dbias), ws.c1, ws.c2, ws.c3);
    });
    KOLO_CUDA_CHECK_LAUNCH();
    if (!dx && !dresidual) return;
    if (v == vec_width<T>()) {
      launch_dx<T, vec_width<T>()>(s, dyt, yt, xt, scale, shift, ws, static_cast<T*>(dx), static_cast<T*>(dresidual),
                                   stream);
    } else {
      launch_dx<T, 1>(s, dyt, yt, xt, scale, shift, ws, static_cast<T*>(dx), static_cast<T*>(dresidual), stream);
    }
    KOLO_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace kolo::cuda
