// CPU 2-D max/avg pooling: oneDNN when built with it (f32, bf16), otherwise direct loops for every floating
// dtype. The loop version needs no workspace: the backward of max pooling recomputes each window's argmax
// (first maximum, as the forward picks it) from x.
#include <limits>

#include "core/ops/kernels/conv.h"
#ifdef KOLO_WITH_DNNL
#include "core/ops/cpu/dnnl_conv.h"
#endif

namespace kolo {
namespace {

struct Window {
  int64_t y0, y1, x0, x1;  // clipped to the image
};

inline Window window(const PoolGeometry& g, int64_t oy, int64_t ox) {
  const int64_t y0 = oy * g.stride[0] - g.padding[0], x0 = ox * g.stride[1] - g.padding[1];
  return {std::max<int64_t>(y0, 0), std::min(y0 + g.kernel[0], g.h), std::max<int64_t>(x0, 0),
          std::min(x0 + g.kernel[1], g.w)};
}

// Plane (n, c) addressing: element (h, w) of the plane is at base + h*sh + w*sw.
struct PlaneIndex {
  int64_t x_base, y_base, sh, sw, osh, osw;
};

inline PlaneIndex plane(const PoolGeometry& g, int64_t n, int64_t c) {
  if (g.channels_last)
    return {n * g.h * g.w * g.c + c, n * g.oh * g.ow * g.c + c, g.w * g.c, g.c, g.ow * g.c, g.c};
  return {(n * g.c + c) * g.h * g.w, (n * g.c + c) * g.oh * g.ow, g.w, 1, g.ow, 1};
}

template <typename T, typename A>
void pool_fwd(PoolKind kind, const PoolGeometry& g, const T* x, T* y) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t c = 0; c < g.c; ++c) {
      const PlaneIndex p = plane(g, n, c);
      for (int64_t oy = 0; oy < g.oh; ++oy)
        for (int64_t ox = 0; ox < g.ow; ++ox) {
          const Window win = window(g, oy, ox);
          A acc = kind == PoolKind::Max ? -std::numeric_limits<A>::infinity() : A(0);
          for (int64_t iy = win.y0; iy < win.y1; ++iy)
            for (int64_t ix = win.x0; ix < win.x1; ++ix) {
              const A v = static_cast<A>(x[p.x_base + iy * p.sh + ix * p.sw]);
              if (kind == PoolKind::Avg) acc += v;
              else if (v > acc || v != v) acc = v;  // NaN propagates, as PyTorch
            }
          if (kind == PoolKind::Avg) acc /= static_cast<A>((win.y1 - win.y0) * (win.x1 - win.x0));
          y[p.y_base + oy * p.osh + ox * p.osw] = static_cast<T>(acc);
        }
    }
}

// Windows overlap when stride < kernel, so each (n, c) plane is owned by one thread.
template <typename T, typename A>
void pool_bwd(PoolKind kind, const PoolGeometry& g, const T* x, const T* dy, T* dx) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t c = 0; c < g.c; ++c) {
      const PlaneIndex p = plane(g, n, c);
      for (int64_t iy = 0; iy < g.h; ++iy)
        for (int64_t ix = 0; ix < g.w; ++ix) dx[p.x_base + iy * p.sh + ix * p.sw] = T(0);
      for (int64_t oy = 0; oy < g.oh; ++oy)
        for (int64_t ox = 0; ox < g.ow; ++ox) {
          const Window win = window(g, oy, ox);
          const A gv = static_cast<A>(dy[p.y_base + oy * p.osh + ox * p.osw]);
          if (kind == PoolKind::Avg) {
            const A share = gv / static_cast<A>((win.y1 - win.y0) * (win.x1 - win.x0));
            for (int64_t iy = win.y0; iy < win.y1; ++iy)
              for (int64_t ix = win.x0; ix < win.x1; ++ix) {
                T& d = dx[p.x_base + iy * p.sh + ix * p.sw];
                d = static_cast<T>(static_cast<A>(d) + share);
              }
            continue;
          }
          int64_t best = -1;
          A bv = -std::numeric_limits<A>::infinity();
          for (int64_t iy = win.y0; iy < win.y1; ++iy)
            for (int64_t ix = win.x0; ix < win.x1; ++ix) {
              const int64_t i = p.x_base + iy * p.sh + ix * p.sw;
              const A v = static_cast<A>(x[i]);
              if (best < 0 || v > bv || (v != v && bv == bv)) {
                best = i;
                bv = v;
              }
            }
          dx[best] = static_cast<T>(static_cast<A>(dx[best]) + gv);
        }
    }
}

template <typename Fn>
void dispatch_pool_dtype(DType dt, const PoolGeometry& g, Fn&& fn) {
  switch (dt) {
    case DType::F32: return fn(float{}, float{});
    case DType::F64: return fn(double{}, double{});
    case DType::BF16: return fn(bf16{}, float{});
    case DType::F16: return fn(f16{}, float{});
    default: KOLO_FAIL("pool2d: unsupported dtype ", dtype_name(dt), " for ", g.str());
  }
}

void cpu_pool2d_fwd(PoolKind kind, const PoolGeometry& g, const Tensor& x, Tensor& y, bool need_workspace,
                    Tensor& workspace) {
#ifdef KOLO_WITH_DNNL
  if (cpu::dnnl_pool_fwd(kind, g, x, y, need_workspace, workspace)) return;
#endif
  dispatch_pool_dtype(x.dtype(), g, [&](auto t, auto a) {
    using T = decltype(t);
    pool_fwd<T, decltype(a)>(kind, g, static_cast<const T*>(x.data_ptr()), static_cast<T*>(y.data_ptr()));
  });
}

void cpu_pool2d_bwd(PoolKind kind, const PoolGeometry& g, const Tensor& x, const Tensor& y, const Tensor& dy,
                    const Tensor& workspace, Tensor& dx) {
#ifdef KOLO_WITH_DNNL
  if (cpu::dnnl_pool_bwd(kind, g, dy, workspace, dx)) return;
#endif
  dispatch_pool_dtype(x.dtype(), g, [&](auto t, auto a) {
    using T = decltype(t);
    pool_bwd<T, decltype(a)>(kind, g, static_cast<const T*>(x.data_ptr()), static_cast<const T*>(dy.data_ptr()),
                             static_cast<T*>(dx.data_ptr()));
  });
}

}  // namespace

KOLO_REGISTER_KERNEL(pool2d_fwd, CPU, cpu_pool2d_fwd);
KOLO_REGISTER_KERNEL(pool2d_bwd, CPU, cpu_pool2d_bwd);

}  // namespace kolo
