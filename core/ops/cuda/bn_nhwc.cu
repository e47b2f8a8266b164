// Channels-last training batch norm kernels (see bn_nhwc_launch.h).
//
// The two reduction passes use a 2-D grid: blockIdx.x tiles the channels (each thread owns V adjacent channels
// and reads them with one vector load per row, so a warp reads whole rows), blockIdx.y strides over rows.
// Each block leaves one partial per channel; a one-thread-per-channel pass merges the partials in block order
// and turns them into per-channel coefficients, so the elementwise passes are one fused multiply-add.
// The elementwise passes walk the same 2-D grid, so each thread loads its channels' coefficients into
// registers once (indexing them per element cost one L1 load per coefficient per element: the dual form's
// backward needs ten). Every pass issues the loads of several rows before using any (memory-level
// parallelism at the occupancy the registers allow); the order in which a thread accumulates is unchanged.
#include <algorithm>
#include <type_traits>

#include "core/device/cuda/cuda_check.h"
#include "core/ops/cuda/bn_nhwc_launch.h"
#include "core/ops/cuda/cuda_dtype.cuh"

namespace kolo::cuda {
namespace {

constexpr int kThreads = 256;

// Where a backward pass finds the ReLU mask: nowhere (plain batch norm), in the forward's output y, in x
// (recomputed with the apply coefficients), or in x and r (the dual form).
enum class Mask { None, FromY, FromX, Dual };

// Rows whose loads the backward kernels issue together: one in the dual form, whose three inputs and two
// norms' coefficients would spill past 128 registers with two.
constexpr int grad_loads(Mask m) { return m == Mask::Dual ? 1 : 2; }

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

// The elementwise passes' grid: the reductions' blocks, with row blocks enough to fill the device.
Geometry elementwise_geometry(const BnNhwcShape& s, int v, int loads) {
  Geometry g = geometry(s, v);
  const int64_t want = std::max<int64_t>(1, 8 * sm_count() / g.gx);
  g.gy = static_cast<int>(std::max<int64_t>(1, std::min(ceil_div(s.rows, int64_t{g.ty} * loads), want)));
  return g;
}

// Calls fn(std::integral_constant<Mask, m>).
template <typename Fn>
void with_mask(Mask m, Fn&& fn) {
  switch (m) {
    case Mask::None: fn(std::integral_constant<Mask, Mask::None>{}); return;
    case Mask::FromY: fn(std::integral_constant<Mask, Mask::FromY>{}); return;
    case Mask::FromX: fn(std::integral_constant<Mask, Mask::FromX>{}); return;
    case Mask::Dual: fn(std::integral_constant<Mask, Mask::Dual>{}); return;
  }
}

// Calls fn(std::integral_constant<int, W>) with W = T's vector width when v is that width, else 1.
template <typename T, typename Fn>
void with_width(int v, Fn&& fn) {
  if (v == vec_width<T>())
    fn(std::integral_constant<int, vec_width<T>()>{});
  else
    fn(std::integral_constant<int, 1>{});
}

// Rows visited by a thread starting at `start` with stride `stride`.
__device__ __forceinline__ float rows_seen(int64_t rows, int64_t start, int64_t stride) {
  return start < rows ? static_cast<float>((rows - 1 - start) / stride + 1) : 0.0f;
}

// Rows whose loads a thread issues together in each pass. The elementwise and gradient kernels are bounded to
// 128 registers, so two 256-thread blocks fit on an SM, with 4 to 8 16-byte loads in flight per thread.
constexpr int kStatsLoads = 4, kApplyLoads = 4;

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
    for (int64_t r = first + stride; r < rows; r += kStatsLoads * stride) {
      Vec<T, V> v[kStatsLoads];
#pragma unroll
      for (int j = 0; j < kStatsLoads; ++j)
        if (r + j * stride < rows) v[j] = reinterpret_cast<const Vec<T, V>*>(x + (r + j * stride) * c)[vcol];
#pragma unroll
      for (int j = 0; j < kStatsLoads; ++j) {
        if (r + j * stride >= rows) break;
#pragma unroll
        for (int k = 0; k < V; ++k) {
          const float d = convert<float>(v[j].v[k]) - shift[k];
          s1[k] += d;
          s2[k] = fmaf(d, d, s2[k]);
        }
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

// bn(x) = x * scale + shift rounded to T, as the unfused batch norm stores it. The forward's apply pass and
// the backward's mask recomputation both go through here, so the mask matches the stored output exactly.
template <typename T>
__device__ __forceinline__ float bn_rounded(float scale, float shift, T x) {
  return convert<float>(convert<T>(fmaf(scale, convert<float>(x), shift)));
}

// Whether relu(bn(x)) > 0: the backward of a batch norm + ReLU without residual takes its mask from x
// instead of reading the output.
template <typename T>
__device__ __forceinline__ bool relu_passes(float scale, float shift, T x) {
  return bn_rounded<T>(scale, shift, x) > 0.0f;
}

// The same for relu(round(bn(x) + bn(r))), the dual form whose residual is itself batch-normalised.
template <typename T>
__device__ __forceinline__ bool relu_passes(float scale, float shift, T x, float rscale, float rshift, T r) {
  return convert<float>(convert<T>(bn_rounded<T>(scale, shift, x) + bn_rounded<T>(rscale, rshift, r))) > 0.0f;
}

// Loads coefficient array `p` (may be null) for V channels from `ch0` into registers.
template <int V>
__device__ __forceinline__ void load_coef(const float* p, int64_t ch0, float (&out)[V]) {
#pragma unroll
  for (int k = 0; k < V; ++k) out[k] = p ? p[ch0 + k] : 0.0f;
}

// What the apply pass adds to bn(x) before the ReLU: nothing, the residual as it is, or the residual through
// its own batch norm (the dual form).
enum class Residual { None, Plain, Normalised };

// y = relu?(round(x * scale + shift) [+ residual]) over [rows, c] in V-wide channel vectors, on the reduction
// passes' 2-D grid. The batch-norm result is rounded to T before the residual add, as the unfused composite
// does. A normalised residual is round(residual * rscale + rshift), as its own batch norm would have stored it.
template <typename T, int V, Residual R>
__global__ void __launch_bounds__(kThreads, 2)
    apply_kernel(int64_t rows, int64_t c, const T* x, const T* residual, bool relu, const float* scale,
                 const float* shift, const float* rscale, const float* rshift, T* y) {
  const int64_t cv = c / V;
  const int64_t vcol = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (vcol >= cv) return;
  float sc[V], sh[V], rsc[V], rsh[V];
  load_coef<V>(scale, vcol * V, sc);
  load_coef<V>(shift, vcol * V, sh);
  if constexpr (R == Residual::Normalised) {
    load_coef<V>(rscale, vcol * V, rsc);
    load_coef<V>(rshift, vcol * V, rsh);
  }
  const Vec<T, V>* xv = reinterpret_cast<const Vec<T, V>*>(x) + vcol;
  const Vec<T, V>* rv = R == Residual::None ? nullptr : reinterpret_cast<const Vec<T, V>*>(residual) + vcol;
  Vec<T, V>* yv = reinterpret_cast<Vec<T, V>*>(y) + vcol;
  const int64_t stride = static_cast<int64_t>(gridDim.y) * blockDim.y;
  for (int64_t r0 = static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y; r0 < rows;
       r0 += kApplyLoads * stride) {
    Vec<T, V> u[kApplyLoads], q[kApplyLoads];
#pragma unroll
    for (int j = 0; j < kApplyLoads; ++j) {
      const int64_t r = r0 + j * stride;
      if (r >= rows) break;
      u[j] = xv[r * cv];
      if constexpr (R != Residual::None) q[j] = rv[r * cv];
    }
#pragma unroll
    for (int j = 0; j < kApplyLoads; ++j) {
      const int64_t r = r0 + j * stride;
      if (r >= rows) break;
      Vec<T, V> o;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        float v = bn_rounded<T>(sc[k], sh[k], u[j].v[k]);
        if constexpr (R == Residual::Plain) v = convert<float>(convert<T>(v + convert<float>(q[j].v[k])));
        if constexpr (R == Residual::Normalised)
          v = convert<float>(convert<T>(v + bn_rounded<T>(rsc[k], rsh[k], q[j].v[k])));
        o.v[k] = convert<T>(relu && v < 0.0f ? 0.0f : v);  // NaN passes, as relu()
      }
      yv[r * cv] = o;
    }
  }
}

// The second batch norm of the dual form relu(bn(x) + bn(r)) in the backward passes: its input, statistics,
// apply coefficients (for the mask) and gradient coefficients (dr = a*dz + bx*r + d). r == null: not dual.
template <typename T>
struct DualBn {
  const T* r = nullptr;
  const float *mean = nullptr, *scale = nullptr, *shift = nullptr, *a = nullptr, *bx = nullptr, *d = nullptr;
  T* dr = nullptr;
};

// Per-thread state of the backward passes for V channels: the mask's apply coefficients (both norms' in the
// dual form) and dz = dy with the mask applied.
template <typename T, int V, Mask M>
struct MaskCoef {
  float sc[V], sh[V], rsc[V], rsh[V];
  __device__ __forceinline__ void load(const float* scale, const float* shift, const DualBn<T>& du, int64_t ch0) {
    if constexpr (M == Mask::FromX || M == Mask::Dual) {
      load_coef<V>(scale, ch0, sc);
      load_coef<V>(shift, ch0, sh);
    }
    if constexpr (M == Mask::Dual) {
      load_coef<V>(du.scale, ch0, rsc);
      load_coef<V>(du.shift, ch0, rsh);
    }
  }
  // dz for element k from dy's, x's, y's and r's values there (y and r only read in their modes).
  __device__ __forceinline__ float dz(int k, T g, T x, T y, T r) const {
    bool on = true;
    if constexpr (M == Mask::FromY) on = convert<float>(y) > 0.0f;
    if constexpr (M == Mask::FromX) on = relu_passes<T>(sc[k], sh[k], x);
    if constexpr (M == Mask::Dual) on = relu_passes<T>(sc[k], sh[k], x, rsc[k], rsh[k], r);
    return on ? convert<float>(g) : 0.0f;
  }
};

// A backward pass's loads for a thread's V channels of up to L rows from r0, `stride` apart and below `rows`:
// dy, x and the mask's source (y, or r in the dual form; m is left unset otherwise).
template <typename T, int V, Mask M, int L>
__device__ __forceinline__ void load_grad_rows(const T* dy, const T* x, const T* y, const T* r, int64_t c,
                                               int64_t vcol, int64_t r0, int64_t stride, int64_t rows,
                                               Vec<T, V> (&g)[L], Vec<T, V> (&u)[L], Vec<T, V> (&m)[L]) {
  auto at = [&](const T* p, int64_t row) { return reinterpret_cast<const Vec<T, V>*>(p + row * c)[vcol]; };
#pragma unroll
  for (int j = 0; j < L; ++j) {
    const int64_t row = r0 + j * stride;
    if (row >= rows) break;
    g[j] = at(dy, row);
    u[j] = at(x, row);
    if constexpr (M == Mask::FromY) m[j] = at(y, row);
    if constexpr (M == Mask::Dual) m[j] = at(r, row);
  }
}

// dx = a*dz + bx*x + d per channel (dz: dy with the mask applied); dresidual = dz when requested (FromY);
// in the dual form dr = a'*dz + bx'*r + d' with the second norm's coefficients. On the reduction passes'
// 2-D grid, the coefficients in registers.
template <typename T, int V, Mask M>
__global__ void __launch_bounds__(kThreads, 2) dx_kernel(int64_t rows, int64_t c, const T* dy, const T* y, const T* x, const float* scale,
                          const float* shift, const float* a, const float* bx, const float* d, T* dx, T* dresidual,
                          DualBn<T> du) {
  constexpr int L = grad_loads(M);
  const int64_t cv = c / V;
  const int64_t vcol = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (vcol >= cv) return;
  MaskCoef<T, V, M> mc;
  mc.load(scale, shift, du, vcol * V);
  float ca[V], cb[V], cd[V], ra[V], rb[V], rd[V];
  load_coef<V>(a, vcol * V, ca);
  load_coef<V>(bx, vcol * V, cb);
  load_coef<V>(d, vcol * V, cd);
  if constexpr (M == Mask::Dual) {
    load_coef<V>(du.a, vcol * V, ra);
    load_coef<V>(du.bx, vcol * V, rb);
    load_coef<V>(du.d, vcol * V, rd);
  }
  const int64_t stride = static_cast<int64_t>(gridDim.y) * blockDim.y;
  auto out = [&](T* p, int64_t r) -> Vec<T, V>& { return reinterpret_cast<Vec<T, V>*>(p + r * c)[vcol]; };
  for (int64_t r0 = static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y; r0 < rows;
       r0 += L * stride) {
    Vec<T, V> g[L], u[L], m[L];
    load_grad_rows<T, V, M, L>(dy, x, y, du.r, c, vcol, r0, stride, rows, g, u, m);
#pragma unroll
    for (int j = 0; j < L; ++j) {
      const int64_t r = r0 + j * stride;
      if (r >= rows) break;
      Vec<T, V> z, o, ro;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const float gv = mc.dz(k, g[j].v[k], u[j].v[k], m[j].v[k], m[j].v[k]);
        z.v[k] = convert<T>(gv);
        o.v[k] = convert<T>(ca[k] * gv + cb[k] * convert<float>(u[j].v[k]) + cd[k]);
        if constexpr (M == Mask::Dual) ro.v[k] = convert<T>(ra[k] * gv + rb[k] * convert<float>(m[j].v[k]) + rd[k]);
      }
      if (dx) out(dx, r) = o;
      if constexpr (M == Mask::FromY)
        if (dresidual) out(dresidual, r) = z;
      if constexpr (M == Mask::Dual)
        if (du.dr) out(du.dr, r) = ro;
    }
  }
}

// Per-block sums of dz, dz * (x - mean) and, in the dual form, dz * (r - r's mean) for V channels per thread,
// merged over threadIdx.y in order. With the mask from y, dz itself is also stored in dz_out when given (the
// residual's gradient, which the dx pass then reads in place of dy and y: one pass fewer).
template <typename T, int V, Mask M>
__global__ void __launch_bounds__(kThreads, 2) grad_partial_kernel(const T* dy, const T* y, const T* x, const float* mean, const float* scale,
                                    const float* shift, int64_t rows, int64_t c, float* part_dy, float* part_dyx,
                                    DualBn<T> du, float* part_dyr, T* dz_out) {
  constexpr int L = grad_loads(M);
  extern __shared__ float smem[];
  const int tx = blockDim.x, ty = blockDim.y;
  float* sh_dy = smem;
  float* sh_dyx = smem + ty * tx * V;
  float* sh_dyr = smem + 2 * ty * tx * V;  // dual form only (the launch sizes smem for it)
  const int64_t vcol = static_cast<int64_t>(blockIdx.x) * tx + threadIdx.x;
  const bool active = vcol < c / V;
  const int64_t stride = static_cast<int64_t>(gridDim.y) * ty;
  constexpr bool dual = M == Mask::Dual;
  float sdy[V], sdyx[V], sdyr[V], mu[V], rmu[V];
#pragma unroll
  for (int k = 0; k < V; ++k) sdy[k] = sdyx[k] = sdyr[k] = 0.0f;
  if (active) {
    MaskCoef<T, V, M> mc;
    mc.load(scale, shift, du, vcol * V);
    load_coef<V>(mean, vcol * V, mu);
    if constexpr (dual) load_coef<V>(du.mean, vcol * V, rmu);
    for (int64_t r0 = static_cast<int64_t>(blockIdx.y) * ty + threadIdx.y; r0 < rows; r0 += L * stride) {
      Vec<T, V> g[L], v[L], m[L];
      load_grad_rows<T, V, M, L>(dy, x, y, du.r, c, vcol, r0, stride, rows, g, v, m);
#pragma unroll
      for (int j = 0; j < L; ++j) {
        if (r0 + j * stride >= rows) break;
        Vec<T, V> z;
#pragma unroll
        for (int k = 0; k < V; ++k) {
          const float gv = mc.dz(k, g[j].v[k], v[j].v[k], m[j].v[k], m[j].v[k]);
          z.v[k] = convert<T>(gv);
          sdy[k] += gv;
          sdyx[k] += gv * (convert<float>(v[j].v[k]) - mu[k]);
          if constexpr (dual) sdyr[k] += gv * (convert<float>(m[j].v[k]) - rmu[k]);
        }
        if constexpr (M == Mask::FromY)
          if (dz_out) reinterpret_cast<Vec<T, V>*>(dz_out + (r0 + j * stride) * c)[vcol] = z;
      }
    }
  }
  const int slot = (threadIdx.y * tx + threadIdx.x) * V;
#pragma unroll
  for (int k = 0; k < V; ++k) {
    sh_dy[slot + k] = sdy[k];
    sh_dyx[slot + k] = sdyx[k];
    if constexpr (dual) sh_dyr[slot + k] = sdyr[k];
  }
  __syncthreads();
  if (threadIdx.y != 0 || !active) return;
  for (int j = 1; j < ty; ++j) {
    const int other = (j * tx + threadIdx.x) * V;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      sdy[k] += sh_dy[other + k];
      sdyx[k] += sh_dyx[other + k];
      if constexpr (dual) sdyr[k] += sh_dyr[other + k];
    }
  }
  const int64_t base = static_cast<int64_t>(blockIdx.y) * c + vcol * V;
#pragma unroll
  for (int k = 0; k < V; ++k) {
    part_dy[base + k] = sdy[k];
    part_dyx[base + k] = sdyx[k];
    if constexpr (dual) part_dyr[base + k] = sdyr[k];
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

// Scratch carved from the caller's workspace: the per-block partials (three arrays in the dual form) and
// per-channel coefficients: c1..c3 the dx pass's (a, bx, d), c4/c5 the apply scale/shift; rc* the same for
// the dual form's second batch norm.
struct Workspace {
  float *part1, *part2, *part3, *c1, *c2, *c3, *c4, *c5, *rc1, *rc2, *rc3, *rc4, *rc5;
};

Workspace carve(void* ws, const BnNhwcShape& s, bool dual) {
  float* f = static_cast<float*>(ws);
  const int64_t parts = max_row_blocks(s.rows) * s.c;
  float* c = f + (dual ? 3 : 2) * parts;
  Workspace w{f, f + parts, dual ? f + 2 * parts : nullptr, c, c + s.c, c + 2 * s.c, c + 3 * s.c, c + 4 * s.c,
              nullptr, nullptr, nullptr, nullptr, nullptr};
  if (dual) {
    float* r = c + 5 * s.c;
    w.rc1 = r;
    w.rc2 = r + s.c;
    w.rc3 = r + 2 * s.c;
    w.rc4 = r + 3 * s.c;
    w.rc5 = r + 4 * s.c;
  }
  return w;
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

constexpr const char* kOp = "batch_norm (channels-last kernels)";

// One batch norm's statistics: the partial pass over x, then the final pass (saved and running statistics,
// and the apply pass's scale/shift).
template <typename T>
void launch_stats(DType t, const BnNhwcShape& s, int v, const void* x, DType param_t, const void* w, const void* b,
                  DType running_t, void* running_mean, void* running_var, double momentum, double eps,
                  float* save_mean, float* save_invstd, float* part1, float* part2, float* scale, float* shift,
                  cudaStream_t stream) {
  const Geometry g = geometry(s, v);
  const size_t smem = 2 * static_cast<size_t>(kThreads) * v * sizeof(float);
  const dim3 block(g.tx, g.ty), grid(g.gx, g.gy);
  with_width<T>(v, [&](auto w) {
    stats_partial_kernel<T, decltype(w)::value>
        <<<grid, block, smem, stream>>>(static_cast<const T*>(x), s.rows, s.c, part1, part2);
  });
  KOLO_CUDA_CHECK_LAUNCH();
  dispatch_param<T>(t, param_t, "affine parameters", [&](auto ptag) {
    using P = decltype(ptag);
    dispatch_param<T>(t, running_t, "running statistics", [&](auto rtag) {
      using R = decltype(rtag);
      stats_final_kernel<P, R><<<final_grid(s.c), final_block(), 0, stream>>>(
          s.rows, s.c, g.gy, g.ty, part1, part2, static_cast<const P*>(w), static_cast<const P*>(b),
          static_cast<R*>(running_mean), static_cast<R*>(running_var), static_cast<float>(momentum),
          static_cast<float>(eps), save_mean, save_invstd, scale, shift);
    });
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

template <typename T>
void launch_apply(const BnNhwcShape& s, int v, const void* x, const void* residual, bool relu, const float* scale,
                  const float* shift, const float* rscale, const float* rshift, void* y, cudaStream_t stream) {
  const Geometry g = elementwise_geometry(s, v, kApplyLoads);
  const Residual res = !residual ? Residual::None : rscale ? Residual::Normalised : Residual::Plain;
  auto launch = [&](auto w, auto r) {
    apply_kernel<T, decltype(w)::value, decltype(r)::value><<<dim3(g.gx, g.gy), dim3(g.tx, g.ty), 0, stream>>>(
        s.rows, s.c, static_cast<const T*>(x), static_cast<const T*>(residual), relu, scale, shift, rscale, rshift,
        static_cast<T*>(y));
  };
  with_width<T>(v, [&](auto w) {
    switch (res) {
      case Residual::None: launch(w, std::integral_constant<Residual, Residual::None>{}); return;
      case Residual::Plain: launch(w, std::integral_constant<Residual, Residual::Plain>{}); return;
      case Residual::Normalised: launch(w, std::integral_constant<Residual, Residual::Normalised>{}); return;
    }
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

// The forward's apply coefficients again, from the saved statistics (the backward's mask recomputation).
template <typename T>
void launch_affine(DType t, const BnNhwcShape& s, DType param_t, const void* w, const void* b, const float* mean,
                   const float* invstd, float* scale, float* shift, cudaStream_t stream) {
  dispatch_param<T>(t, param_t, "affine parameters", [&](auto ptag) {
    using P = decltype(ptag);
    affine_kernel<P><<<static_cast<unsigned>(ceil_div(s.c, kThreads)), kThreads, 0, stream>>>(
        s.c, static_cast<const P*>(w), static_cast<const P*>(b), mean, invstd, scale, shift);
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

template <typename T>
void launch_grad_final(DType t, const BnNhwcShape& s, int gy, DType param_t, const float* part_dy,
                       const float* part_dyx, const void* w, const float* mean, const float* invstd, void* dweight,
                       void* dbias, float* a, float* bx, float* d, cudaStream_t stream) {
  dispatch_param<T>(t, param_t, "affine parameters", [&](auto ptag) {
    using P = decltype(ptag);
    grad_final_kernel<P><<<final_grid(s.c), final_block(), 0, stream>>>(
        s.rows, s.c, gy, part_dy, part_dyx, static_cast<const P*>(w), mean, invstd, static_cast<P*>(dweight),
        static_cast<P*>(dbias), a, bx, d);
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

// The backward's two data passes (partial sums, then dx [and dr]) around the final pass(es).
template <typename T>
void launch_backward_passes(DType t, const BnNhwcShape& s, int v, const void* dy, const void* y, const void* x,
                            DType param_t, const void* w, const float* save_mean, const float* save_invstd,
                            const float* scale, const float* shift, const Workspace& ws, void* dx, void* dweight,
                            void* dbias, void* dresidual, DualBn<T> du, const void* rw, const float* r_invstd,
                            void* drweight, void* drbias, cudaStream_t stream) {
  const Geometry g = geometry(s, v);
  const size_t smem = (du.r ? 3 : 2) * static_cast<size_t>(kThreads) * v * sizeof(float);
  const Mask mask = du.r ? Mask::Dual : y ? Mask::FromY : scale ? Mask::FromX : Mask::None;
  const T* dyt = static_cast<const T*>(dy);
  const T* yt = static_cast<const T*>(y);
  const T* xt = static_cast<const T*>(x);
  T* dz_out = mask == Mask::FromY ? static_cast<T*>(dresidual) : nullptr;
  with_mask(mask, [&](auto m) {
    with_width<T>(v, [&](auto w) {
      grad_partial_kernel<T, decltype(w)::value, decltype(m)::value><<<dim3(g.gx, g.gy), dim3(g.tx, g.ty), smem,
                                                                       stream>>>(
          dyt, yt, xt, save_mean, scale, shift, s.rows, s.c, ws.part1, ws.part2, du, ws.part3, dz_out);
    });
  });
  KOLO_CUDA_CHECK_LAUNCH();
  launch_grad_final<T>(t, s, g.gy, param_t, ws.part1, ws.part2, w, save_mean, save_invstd, dweight, dbias, ws.c1,
                       ws.c2, ws.c3, stream);
  if (du.r)  // the second batch norm shares the masked dy's sums and has its own sums against r
    launch_grad_final<T>(t, s, g.gy, param_t, ws.part1, ws.part3, rw, du.mean, r_invstd, drweight, drbias, ws.rc1,
                         ws.rc2, ws.rc3, stream);
  if (!dx && !du.dr && (dz_out || !dresidual)) return;
  // Where the partial pass stored dz, the dx pass reads it as an unmasked dy.
  const Mask dx_mask = dz_out ? Mask::None : mask;
  const Geometry e = elementwise_geometry(s, v, grad_loads(dx_mask));
  with_mask(dx_mask, [&](auto m) {
    with_width<T>(v, [&](auto w) {
      dx_kernel<T, decltype(w)::value, decltype(m)::value><<<dim3(e.gx, e.gy), dim3(e.tx, e.ty), 0, stream>>>(
          s.rows, s.c, dz_out ? dz_out : dyt, dz_out ? nullptr : yt, xt, scale, shift, ws.c1, ws.c2, ws.c3,
          static_cast<T*>(dx), dz_out ? nullptr : static_cast<T*>(dresidual), du);
    });
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

}  // namespace

size_t bn_nhwc_workspace_bytes(const BnNhwcShape& s) {
  return static_cast<size_t>(2 * max_row_blocks(s.rows) * s.c + 5 * s.c) * sizeof(float);
}

size_t bn_nhwc_dual_workspace_bytes(const BnNhwcShape& s) {
  return static_cast<size_t>(3 * max_row_blocks(s.rows) * s.c + 10 * s.c) * sizeof(float);
}

void launch_bn_nhwc_forward(DType t, const BnNhwcShape& s, const void* x, DType param_t, const void* w,
                            const void* b, DType running_t, void* running_mean, void* running_var, double momentum,
                            double eps, const void* residual, bool relu, void* y, float* save_mean,
                            float* save_invstd, void* workspace, cudaStream_t stream) {
  if (s.rows == 0 || s.c == 0) return;
  const Workspace ws = carve(workspace, s, false);
  dispatch_vector_float_dtype(t, kOp, [&](auto tag) {
    using T = decltype(tag);
    const int v = vector_width<T>(s, {x, y, residual});
    launch_stats<T>(t, s, v, x, param_t, w, b, running_t, running_mean, running_var, momentum, eps, save_mean,
                    save_invstd, ws.part1, ws.part2, ws.c1, ws.c2, stream);
    launch_apply<T>(s, v, x, residual, relu, ws.c1, ws.c2, nullptr, nullptr, y, stream);
  });
}

void launch_bn_nhwc_dual_forward(DType t, const BnNhwcShape& s, const BnNhwcParams& p, const BnNhwcParams& rp,
                                 DType running_t, double momentum, double eps, const void* x, const void* r, void* y,
                                 float* save_mean, float* save_invstd, float* r_save_mean, float* r_save_invstd,
                                 void* workspace, cudaStream_t stream) {
  if (s.rows == 0 || s.c == 0) return;
  const Workspace ws = carve(workspace, s, true);
  dispatch_vector_float_dtype(t, kOp, [&](auto tag) {
    using T = decltype(tag);
    const int v = vector_width<T>(s, {x, r, y});
    launch_stats<T>(t, s, v, x, p.dtype, p.w, p.b, running_t, p.running_mean, p.running_var, momentum, eps,
                    save_mean, save_invstd, ws.part1, ws.part2, ws.c4, ws.c5, stream);
    launch_stats<T>(t, s, v, r, rp.dtype, rp.w, rp.b, running_t, rp.running_mean, rp.running_var, momentum, eps,
                    r_save_mean, r_save_invstd, ws.part1, ws.part2, ws.rc4, ws.rc5, stream);
    launch_apply<T>(s, v, x, r, true, ws.c4, ws.c5, ws.rc4, ws.rc5, y, stream);
  });
}

void launch_bn_nhwc_backward(DType t, const BnNhwcShape& s, const void* dy, const void* y, bool relu_from_x,
                             const void* x, DType param_t, const void* w, const void* b, const float* save_mean,
                             const float* save_invstd, void* dx, void* dweight, void* dbias, void* dresidual,
                             void* workspace, cudaStream_t stream) {
  if (s.rows == 0 || s.c == 0) return;
  const Workspace ws = carve(workspace, s, false);
  KOLO_CHECK(!relu_from_x || (!y && !dresidual), "batch_norm backward: a ReLU mask from x has no output or residual");
  dispatch_vector_float_dtype(t, kOp, [&](auto tag) {
    using T = decltype(tag);
    const int v = vector_width<T>(s, {dy, y, x, dx, dresidual});
    if (relu_from_x) launch_affine<T>(t, s, param_t, w, b, save_mean, save_invstd, ws.c4, ws.c5, stream);
    launch_backward_passes<T>(t, s, v, dy, y, x, param_t, w, save_mean, save_invstd, relu_from_x ? ws.c4 : nullptr,
                              relu_from_x ? ws.c5 : nullptr, ws, dx, dweight, dbias, dresidual, DualBn<T>{}, nullptr,
                              nullptr, nullptr, nullptr, stream);
  });
}

void launch_bn_nhwc_dual_backward(DType t, const BnNhwcShape& s, const BnNhwcParams& p, const BnNhwcParams& rp,
                                  const void* dy, const void* x, const void* r, const float* save_mean,
                                  const float* save_invstd, const float* r_save_mean, const float* r_save_invstd,
                                  void* dx, void* dweight, void* dbias, void* dr, void* drweight, void* drbias,
                                  void* workspace, cudaStream_t stream) {
  if (s.rows == 0 || s.c == 0) return;
  const Workspace ws = carve(workspace, s, true);
  dispatch_vector_float_dtype(t, kOp, [&](auto tag) {
    using T = decltype(tag);
    const int v = vector_width<T>(s, {dy, x, r, dx, dr});
    launch_affine<T>(t, s, p.dtype, p.w, p.b, save_mean, save_invstd, ws.c4, ws.c5, stream);
    launch_affine<T>(t, s, rp.dtype, rp.w, rp.b, r_save_mean, r_save_invstd, ws.rc4, ws.rc5, stream);
    DualBn<T> du;
    du.r = static_cast<const T*>(r);
    du.mean = r_save_mean;
    du.scale = ws.rc4;
    du.shift = ws.rc5;
    du.a = ws.rc1;
    du.bx = ws.rc2;
    du.d = ws.rc3;
    du.dr = static_cast<T*>(dr);
    launch_backward_passes<T>(t, s, v, dy, nullptr, x, p.dtype, p.w, save_mean, save_invstd, ws.c4, ws.c5, ws, dx,
                              dweight, dbias, nullptr, du, rp.w, r_save_invstd, drweight, drbias, stream);
  });
}

}  // namespace kolo::cuda
