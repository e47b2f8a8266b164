// CUDA layer norm over the last dimension. Forward: a row group per row, two-pass mean/variance (exact for
// values far from zero, as the CPU kernel) and one write pass. Backward: gx per row group; the weight/bias
// gradients are column sums over rows, reduced per row chunk into a partial buffer and then across chunks
// in a fixed order (no atomics: deterministic).
#include <algorithm>
#include <initializer_list>

#include "core/device/cuda/cuda_check.h"
#include "core/ops/cuda/nn_launch.h"
#include "core/ops/cuda/row_reduce.cuh"

namespace kolo::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kColTile = 32, kRowLanes = 8;

template <int TPR, typename T>
__global__ void ln_fwd_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b, double eps,
                              int64_t rows, int64_t d, T* __restrict__ y, Acc<T>* __restrict__ mean,
                              Acc<T>* __restrict__ rstd) {
  using A = Acc<T>;
  __shared__ A smem[kThreads / 32];
  const int t = threadIdx.x % TPR;
  const int per_block = blockDim.x / TPR;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * per_block + threadIdx.x / TPR; row < rows;
       row += static_cast<int64_t>(gridDim.x) * per_block) {
    const T* xr = x + row * d;
    A s = 0;
    for_row<TPR, T, A>(xr, d, t, [&](int64_t, A v) { s += v; });
    const A mu = group_sum<TPR>(s, smem) / static_cast<A>(d);
    A v2 = 0;
    for_row<TPR, T, A>(xr, d, t, [&](int64_t, A v) { v2 += (v - mu) * (v - mu); });
    const A rs = A(1) / sqrt(group_sum<TPR>(v2, smem) / static_cast<A>(d) + static_cast<A>(eps));
    if (t == 0) {
      mean[row] = mu;
      rstd[row] = rs;
    }
    write_row<TPR>(y + row * d, d, t, [&](int64_t i) {
      A h = (convert<A>(xr[i]) - mu) * rs;
      if (w) h *= convert<A>(w[i]);
      if (b) h += convert<A>(b[i]);
      return h;
    });
  }
}

template <int TPR, typename T>
__global__ void ln_bwd_dx_kernel(const T* __restrict__ gy, const T* __restrict__ x, const T* __restrict__ w,
                                 const Acc<T>* __restrict__ mean, const Acc<T>* __restrict__ rstd, int64_t rows,
                                 int64_t d, T* __restrict__ gx) {
  using A = Acc<T>;
  __shared__ A smem[kThreads / 32];
  const int t = threadIdx.x % TPR;
  const int per_block = blockDim.x / TPR;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * per_block + threadIdx.x / TPR; row < rows;
       row += static_cast<int64_t>(gridDim.x) * per_block) {
    const T* g = gy + row * d;
    const T* xr = x + row * d;
    const A mu = mean[row], rs = rstd[row];
    // gh = d loss / d xhat; gx = rs * (gh - mean(gh) - xhat * mean(gh * xhat)).
    A sg = 0, sgx = 0;
    for_row<TPR, T, A>(g, d, t, [&](int64_t i, A gi) {
      const A gh = w ? gi * convert<A>(w[i]) : gi;
      sg += gh;
      sgx += gh * (convert<A>(xr[i]) - mu) * rs;
    });
    const A inv_d = A(1) / static_cast<A>(d);
    const A mg = group_sum<TPR>(sg, smem) * inv_d;
    const A mgx = group_sum<TPR>(sgx, smem) * inv_d;
    write_row<TPR>(gx + row * d, d, t, [&](int64_t i) {
      const A gi = convert<A>(g[i]);
      const A gh = w ? gi * convert<A>(w[i]) : gi;
      return rs * (gh - mg - (convert<A>(xr[i]) - mu) * rs * mgx);
    });
  }
}

// Rows of at most 32 * kRowBatch vectors (1024 bf16 or 512 f32 values: Transformer-big's d_model in bf16)
// are held in a warp's registers: every element of x, gy and the weight is loaded once, all of a lane's
// loads in flight together, where the generic kernels read the row again for each pass. Row sums run in the
// generic kernels' order, so y and gx are the same.
template <typename T>
bool row_in_registers(int64_t d, std::initializer_list<const void*> ptrs) {
  constexpr int W = vec_width<T>();
  if (W == 1 || d % W != 0 || d / W > 32 * kRowBatch) return false;
  for (const void* p : ptrs)
    if (p && !aligned16(p)) return false;
  return true;
}

// Calls f(row) for the rows this warp owns (one warp per row, grid-stride).
template <typename F>
__device__ __forceinline__ void for_warp_rows(int64_t rows, F&& f) {
  const int warps = blockDim.x / 32;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * warps + threadIdx.x / 32; row < rows;
       row += static_cast<int64_t>(gridDim.x) * warps)
    f(row);
}

template <typename T, int W = vec_width<T>()>
__device__ __forceinline__ void load_row(const T* __restrict__ r, int64_t nv, int lane, Vec<T, W> (&out)[kRowBatch]) {
  const auto* rv = reinterpret_cast<const Vec<T, W>*>(r);
#pragma unroll
  for (int u = 0; u < kRowBatch; ++u)
    if (lane + 32 * u < nv) out[u] = rv[lane + 32 * u];
}

template <typename T>
__global__ void ln_fwd_reg_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                                  double eps, int64_t rows, int64_t d, T* __restrict__ y, Acc<T>* __restrict__ mean,
                                  Acc<T>* __restrict__ rstd) {
  using A = Acc<T>;
  constexpr int W = vec_width<T>();
  const int lane = threadIdx.x % 32;
  const int64_t nv = d / W;
  for_warp_rows(rows, [&](int64_t row) {
    Vec<T, W> xv[kRowBatch];
    load_row(x + row * d, nv, lane, xv);
    A s = 0;
#pragma unroll
    for (int u = 0; u < kRowBatch; ++u)
      if (lane + 32 * u < nv)
#pragma unroll
        for (int j = 0; j < W; ++j) s += convert<A>(xv[u].v[j]);
    const A mu = warp_sum(s) / static_cast<A>(d);
    A v2 = 0;
#pragma unroll
    for (int u = 0; u < kRowBatch; ++u)
      if (lane + 32 * u < nv)
#pragma unroll
        for (int j = 0; j < W; ++j) v2 += (convert<A>(xv[u].v[j]) - mu) * (convert<A>(xv[u].v[j]) - mu);
    const A rs = A(1) / sqrt(warp_sum(v2) / static_cast<A>(d) + static_cast<A>(eps));
    if (lane == 0) {
      mean[row] = mu;
      rstd[row] = rs;
    }
    auto* yr = reinterpret_cast<Vec<T, W>*>(y + row * d);
#pragma unroll
    for (int u = 0; u < kRowBatch; ++u) {
      const int64_t v = lane + 32 * u;
      if (v >= nv) break;
      Vec<T, W> wv, bv, o;
      if (w) wv = reinterpret_cast<const Vec<T, W>*>(w)[v];
      if (b) bv = reinterpret_cast<const Vec<T, W>*>(b)[v];
#pragma unroll
      for (int j = 0; j < W; ++j) {
        A h = (convert<A>(xv[u].v[j]) - mu) * rs;
        if (w) h *= convert<A>(wv.v[j]);
        if (b) h += convert<A>(bv.v[j]);
        o.v[j] = convert<T>(h);
      }
      yr[v] = o;
    }
  });
}

// The input gradient of register rows; with kParams also the weight and bias gradients' partial sums: a
// lane owns the same columns in every row, so it sums gy * xhat and gy for them across its warp's rows, the
// block adds its warps' sums in a fixed order, and pw / pb [gridDim.x, d] get one row per block. This saves
// the partial kernel's second read of gy and x.
template <typename T, bool kParams>
__global__ void ln_bwd_dx_reg_kernel(const T* __restrict__ gy, const T* __restrict__ x, const T* __restrict__ w,
                                     const Acc<T>* __restrict__ mean, const Acc<T>* __restrict__ rstd, int64_t rows,
                                     int64_t d, T* __restrict__ gx, Acc<T>* __restrict__ pw, Acc<T>* __restrict__ pb) {
  using A = Acc<T>;
  constexpr int W = vec_width<T>();
  const int lane = threadIdx.x % 32;
  const int64_t nv = d / W;
  Vec<T, W> wv[kRowBatch];
  if (w) load_row(w, nv, lane, wv);
  A aw[kRowBatch][W] = {}, ab[kRowBatch][W] = {};
  for_warp_rows(rows, [&](int64_t row) {
    Vec<T, W> gv[kRowBatch], xv[kRowBatch];
    load_row(gy + row * d, nv, lane, gv);
    load_row(x + row * d, nv, lane, xv);
    const A mu = mean[row], rs = rstd[row];
    A sg = 0, sgx = 0;
#pragma unroll
    for (int u = 0; u < kRowBatch; ++u)
      if (lane + 32 * u < nv)
#pragma unroll
        for (int j = 0; j < W; ++j) {
          const A gi = convert<A>(gv[u].v[j]);
          const A xh = (convert<A>(xv[u].v[j]) - mu) * rs;
          const A gh = w ? gi * convert<A>(wv[u].v[j]) : gi;
          sg += gh;
          sgx += gh * xh;
          if constexpr (kParams) {
            aw[u][j] += gi * xh;
            ab[u][j] += gi;
          }
        }
    const A inv_d = A(1) / static_cast<A>(d);
    const A mg = warp_sum(sg) * inv_d;
    const A mgx = warp_sum(sgx) * inv_d;
    auto* out = reinterpret_cast<Vec<T, W>*>(gx + row * d);
#pragma unroll
    for (int u = 0; u < kRowBatch; ++u) {
      const int64_t v = lane + 32 * u;
      if (v >= nv) break;
      Vec<T, W> o;
#pragma unroll
      for (int j = 0; j < W; ++j) {
        const A gi = convert<A>(gv[u].v[j]);
        const A gh = w ? gi * convert<A>(wv[u].v[j]) : gi;
        o.v[j] = convert<T>(rs * (gh - mg - (convert<A>(xv[u].v[j]) - mu) * rs * mgx));
      }
      out[v] = o;
    }
  });
  if constexpr (kParams) {
    constexpr int kWarps = kThreads / 32;
    __shared__ A red[kWarps][32 * kRowBatch * W];  // one row of column sums per warp
    const int warp = threadIdx.x / 32;
    for (int q = 0; q < 2; ++q) {
#pragma unroll
      for (int u = 0; u < kRowBatch; ++u)
        if (lane + 32 * u < nv)
#pragma unroll
          for (int j = 0; j < W; ++j) red[warp][(lane + 32 * u) * W + j] = q ? ab[u][j] : aw[u][j];
      __syncthreads();
      A* out = q ? pb : pw;
      for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
        A s = 0;
#pragma unroll
        for (int k = 0; k < kWarps; ++k) s += red[k][c];
        out[blockIdx.x * d + c] = s;
      }
      __syncthreads();
    }
  }
}

// Block (kColTile, kRowLanes): column tile blockIdx.x of kColTile * W columns, row chunk blockIdx.y ->
// partial sums of gy * xhat and gy per column into pw / pb [chunks, d]. Each thread reads W consecutive
// columns of a row with one vector load (W == 1 where d or the pointers do not allow it).
template <typename T, int W>
__global__ void ln_bwd_partial_kernel(const T* __restrict__ gy, const T* __restrict__ x,
                                      const Acc<T>* __restrict__ mean, const Acc<T>* __restrict__ rstd, int64_t rows,
                                      int64_t d, int64_t rows_per_chunk, Acc<T>* pw, Acc<T>* pb) {
  using A = Acc<T>;
  __shared__ A sw[kRowLanes][W][kColTile];  // [lane][column within the vector][thread]: no bank conflicts
  __shared__ A sb[kRowLanes][W][kColTile];
  const int64_t col = (static_cast<int64_t>(blockIdx.x) * kColTile + threadIdx.x) * W;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = min(rows, r0 + rows_per_chunk);
  A aw[W] = {}, ab[W] = {};
  if (col < d) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kRowLanes) {
      const Vec<T, W> g = *reinterpret_cast<const Vec<T, W>*>(gy + r * d + col);
      const Vec<T, W> xv = *reinterpret_cast<const Vec<T, W>*>(x + r * d + col);
      const A mu = mean[r], rs = rstd[r];
#pragma unroll
      for (int j = 0; j < W; ++j) {
        const A gi = convert<A>(g.v[j]);
        aw[j] += gi * (convert<A>(xv.v[j]) - mu) * rs;
        ab[j] += gi;
      }
    }
  }
#pragma unroll
  for (int j = 0; j < W; ++j) {
    sw[threadIdx.y][j][threadIdx.x] = aw[j];
    sb[threadIdx.y][j][threadIdx.x] = ab[j];
  }
  __syncthreads();
  if (threadIdx.y == 0 && col < d) {
#pragma unroll
    for (int j = 0; j < W; ++j) {
      for (int k = 1; k < kRowLanes; ++k) {
        aw[j] += sw[k][j][threadIdx.x];
        ab[j] += sb[k][j][threadIdx.x];
      }
      pw[blockIdx.y * d + col + j] = aw[j];
      pb[blockIdx.y * d + col + j] = ab[j];
    }
  }
}

template <typename T>
__global__ void ln_bwd_finish_kernel(const Acc<T>* pw, const Acc<T>* pb, int64_t chunks, int64_t d, T* gw, T* gb) {
  using A = Acc<T>;
  for (int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; col < d;
       col += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    A aw = 0, ab = 0;
    for (int64_t k = 0; k < chunks; ++k) {
      aw += pw[k * d + col];
      ab += pb[k * d + col];
    }
    if (gw) gw[col] = convert<T>(aw);
    if (gb) gb[col] = convert<T>(ab);
  }
}

// Row chunks of the parameter-gradient reduction: enough blocks to fill the device, at least 64 rows each.
// Counted for the vector width of the dtype whichever width a launch takes, so the partial buffer sized
// from it fits both.
template <typename T>
int64_t chunks_for(int64_t rows, int64_t d) {
  const int64_t tile = int64_t{kColTile} * vec_width<T>();
  const int64_t col_tiles = (d + tile - 1) / tile;
  const int64_t want = std::max<int64_t>(1, (4 * sm_count() + col_tiles - 1) / col_tiles);
  return std::max<int64_t>(1, std::min(want, (rows + 63) / 64));
}

template <typename Launch>
void by_row_length(int64_t rows, int64_t n, Launch&& launch) {
  if (n <= 1024) launch(std::integral_constant<int, 32>{}, grid_for(rows * 32, kThreads));
  else launch(std::integral_constant<int, kThreads>{}, grid_for(rows * kThreads, kThreads));
}

}  // namespace

void launch_layer_norm_fwd(DType t, const void* x, const void* weight, const void* bias, double eps, int64_t rows,
                           int64_t d, void* y, void* mean, void* rstd, cudaStream_t stream) {
  if (rows == 0 || d == 0) return;
  dispatch_float_dtype(t, "layer_norm", [&](auto tag) {
    using T = decltype(tag);
    if (row_in_registers<T>(d, {x, weight, bias, y})) {
      ln_fwd_reg_kernel<T><<<grid_for(rows * 32, kThreads), kThreads, 0, stream>>>(
          static_cast<const T*>(x), static_cast<const T*>(weight), static_cast<const T*>(bias), eps, rows, d,
          static_cast<T*>(y), static_cast<Acc<T>*>(mean), static_cast<Acc<T>*>(rstd));
      return;
    }
    by_row_length(rows, d, [&](auto tpr, int grid) {
      ln_fwd_kernel<decltype(tpr)::value, T><<<grid, kThreads, 0, stream>>>(
          static_cast<const T*>(x), static_cast<const T*>(weight), static_cast<const T*>(bias), eps, rows, d,
          static_cast<T*>(y), static_cast<Acc<T>*>(mean), static_cast<Acc<T>*>(rstd));
    });
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

size_t layer_norm_bwd_partial_bytes(DType t, int64_t rows, int64_t d) {
  size_t bytes = 0;
  dispatch_float_dtype(t, "layer_norm backward", [&](auto tag) {
    using T = decltype(tag);
    bytes = 2 * static_cast<size_t>(chunks_for<T>(rows, d) * d) * sizeof(Acc<T>);
  });
  return bytes;
}

void launch_layer_norm_bwd(DType t, const void* gy, const void* x, const void* weight, const void* mean,
                           const void* rstd, int64_t rows, int64_t d, void* gx, void* gw, void* gb, void* partial,
                           cudaStream_t stream) {
  if (d == 0) return;
  dispatch_float_dtype(t, "layer_norm backward", [&](auto tag) {
    using T = decltype(tag);
    using A = Acc<T>;
    const int64_t chunks = chunks_for<T>(rows, d);
    A* pw = static_cast<A*>(partial);
    A* pb = pw + chunks * d;
    const bool params = gw || gb;
    bool partials_done = false;  // the register-row kernel summed the weight/bias partials itself
    if (rows > 0 && row_in_registers<T>(d, {gy, x, weight, gx})) {
      const auto* gyt = static_cast<const T*>(gy);
      const auto *xt = static_cast<const T*>(x), *wt = static_cast<const T*>(weight);
      const auto *mt = static_cast<const A*>(mean), *rt = static_cast<const A*>(rstd);
      if (params) {
        // One row of partial sums per block: `chunks` blocks, the partial buffer's size.
        ln_bwd_dx_reg_kernel<T, true><<<static_cast<unsigned>(chunks), kThreads, 0, stream>>>(
            gyt, xt, wt, mt, rt, rows, d, static_cast<T*>(gx), pw, pb);
        partials_done = true;
      } else {
        ln_bwd_dx_reg_kernel<T, false><<<grid_for(rows * 32, kThreads), kThreads, 0, stream>>>(
            gyt, xt, wt, mt, rt, rows, d, static_cast<T*>(gx), nullptr, nullptr);
      }
      KOLO_CUDA_CHECK_LAUNCH();
    } else if (rows > 0) {
      by_row_length(rows, d, [&](auto tpr, int grid) {
        ln_bwd_dx_kernel<decltype(tpr)::value, T><<<grid, kThreads, 0, stream>>>(
            static_cast<const T*>(gy), static_cast<const T*>(x), static_cast<const T*>(weight),
            static_cast<const A*>(mean), static_cast<const A*>(rstd), rows, d, static_cast<T*>(gx));
      });
      KOLO_CUDA_CHECK_LAUNCH();
    }
    if (!params) return;
    if (!partials_done) {
      const int64_t per_chunk = (rows + chunks - 1) / chunks;
      auto partials = [&](auto w) {
        constexpr int W = decltype(w)::value;
        const dim3 grid(static_cast<unsigned>((d + int64_t{kColTile} * W - 1) / (int64_t{kColTile} * W)),
                        static_cast<unsigned>(chunks));
        ln_bwd_partial_kernel<T, W><<<grid, dim3(kColTile, kRowLanes), 0, stream>>>(
            static_cast<const T*>(gy), static_cast<const T*>(x), static_cast<const A*>(mean),
            static_cast<const A*>(rstd), rows, d, per_chunk, pw, pb);
      };
      constexpr int kW = vec_width<T>();
      if (kW > 1 && d % kW == 0 && aligned16(gy) && aligned16(x)) partials(std::integral_constant<int, kW>{});
      else partials(std::integral_constant<int, 1>{});
      KOLO_CUDA_CHECK_LAUNCH();
    }
    ln_bwd_finish_kernel<T><<<grid_for(d, kThreads), kThreads, 0, stream>>>(pw, pb, chunks, d, static_cast<T*>(gw),
                                                                            static_cast<T*>(gb));
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

}  // namespace kolo::cuda
