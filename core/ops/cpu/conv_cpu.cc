// CPU conv2d kernels: oneDNN when built with it and the dtype is one it runs (f32, bf16), otherwise an
// im2col + Eigen GEMM implementation that serves every floating dtype (f64 for gradient checks; f16 and,
// without oneDNN, bf16 computed in f32).
//
// im2col here builds, per image and group, col[K, P] with P = oh*ow output positions and K the reduction
// index ordered like the weight layout ((c, kh, kw) for OIHW, (kh, kw, c) for OHWI), so that the group's
// weights are a plain row-major [Og, K] matrix in both layouts and y_g[Og, P] = W_g @ col.
#include <Eigen/Core>
#include <vector>

#include "core/ops/kernels/conv.h"
#include "core/ops/kernels/elementwise.h"
#ifdef KOLO_WITH_DNNL
#include "core/ops/cpu/dnnl_conv.h"
#endif

namespace kolo {
namespace {

template <typename T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using DynStride = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
template <typename T>
using CMap = Eigen::Map<const RowMat<T>, 0, DynStride>;
template <typename T>
using MMap = Eigen::Map<RowMat<T>, 0, DynStride>;

// Element strides of an activation tensor [n, c, h, w] in its layout.
struct Strides4 {
  int64_t n, c, h, w;
};

Strides4 act_strides(int64_t c, int64_t h, int64_t w, bool channels_last) {
  if (channels_last) return {h * w * c, 1, w * c, c};
  return {c * h * w, h * w, w, 1};
}

// Decomposes the reduction index k into (channel within group, kernel row, kernel col) for the layout.
struct KIndex {
  int64_t c, i, j;
};

inline KIndex k_index(const ConvGeometry& g, int64_t cg, int64_t k) {
  if (g.channels_last) return {k % cg, k / cg / g.kw, (k / cg) % g.kw};
  return {k / (g.kh * g.kw), (k / g.kw) % g.kh, k % g.kw};
}

// col[k, p] = x[image, group channel c, oh*s - pad + i*d, ow*s - pad + j*d] (0 outside).
template <typename T>
void im2col(const ConvGeometry& g, const T* img, const Strides4& xs, int64_t c0, T* col) {
  const int64_t cg = g.c / g.groups, kk = cg * g.kh * g.kw, p = g.oh * g.ow;
#pragma omp parallel for schedule(static) if (kk * p > 16384)
  for (int64_t k = 0; k < kk; ++k) {
    const KIndex ki = k_index(g, cg, k);
    T* row = col + k * p;
    const T* plane = img + (c0 + ki.c) * xs.c;
    for (int64_t oy = 0; oy < g.oh; ++oy) {
      const int64_t iy = oy * g.stride[0] - g.padding[0] + ki.i * g.dilation[0];
      T* out = row + oy * g.ow;
      if (iy < 0 || iy >= g.h) {
        std::fill(out, out + g.ow, T(0));
        continue;
      }
      for (int64_t ox = 0; ox < g.ow; ++ox) {
        const int64_t ix = ox * g.stride[1] - g.padding[1] + ki.j * g.dilation[1];
        out[ox] = (ix >= 0 && ix < g.w) ? plane[iy * xs.h + ix * xs.w] : T(0);
      }
    }
  }
}

// The adjoint of im2col: img[...] += col[k, p]. Parallel over channels so no two threads add to one element.
template <typename T>
void col2im(const ConvGeometry& g, const T* col, const Strides4& xs, int64_t c0, T* img) {
  const int64_t cg = g.c / g.groups, khw = g.kh * g.kw, p = g.oh * g.ow;
#pragma omp parallel for schedule(static) if (cg * khw * p > 16384)
  for (int64_t c = 0; c < cg; ++c) {
    T* plane = img + (c0 + c) * xs.c;
    for (int64_t ij = 0; ij < khw; ++ij) {
      const int64_t i = ij / g.kw, j = ij % g.kw;
      const int64_t k = g.channels_last ? ij * cg + c : c * khw + ij;
      const T* row = col + k * p;
      for (int64_t oy = 0; oy < g.oh; ++oy) {
        const int64_t iy = oy * g.stride[0] - g.padding[0] + i * g.dilation[0];
        if (iy < 0 || iy >= g.h) continue;
        for (int64_t ox = 0; ox < g.ow; ++ox) {
          const int64_t ix = ox * g.stride[1] - g.padding[1] + j * g.dilation[1];
          if (ix >= 0 && ix < g.w) plane[iy * xs.h + ix * xs.w] += row[oy * g.ow + ox];
        }
      }
    }
  }
}

// The [Og, P] block of image `n`, group `grp` of an output-shaped tensor, as a strided matrix view.
struct OutBlock {
  int64_t offset, row_stride, col_stride;
};

OutBlock out_block(const ConvGeometry& g, int64_t n, int64_t grp) {
  const int64_t p = g.oh * g.ow, og = g.o / g.groups;
  if (g.channels_last) return {n * p * g.o + grp * og, 1, g.o};
  return {n * g.o * p + grp * og * p, p, 1};
}

template <typename T>
void ref_fwd(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y) {
  const int64_t cg = g.c / g.groups, og = g.o / g.groups, kk = cg * g.kh * g.kw, p = g.oh * g.ow;
  const Strides4 xs = act_strides(g.c, g.h, g.w, g.channels_last);
  std::vector<T> col(static_cast<size_t>(kk * p));
  for (int64_t n = 0; n < g.n; ++n) {
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      im2col(g, x + n * xs.n, xs, grp * cg, col.data());
      const OutBlock ob = out_block(g, n, grp);
      CMap<T> W(w + grp * og * kk, og, kk, DynStride(kk, 1));
      CMap<T> C(col.data(), kk, p, DynStride(p, 1));
      MMap<T> Y(y + ob.offset, og, p, DynStride(ob.row_stride, ob.col_stride));
      Y.noalias() = W * C;
      if (bias)
        for (int64_t o = 0; o < og; ++o) Y.row(o).array() += bias[grp * og + o];
    }
  }
}

template <typename T>
void ref_bwd_data(const ConvGeometry& g, const T* dy, const T* w, T* dx) {
  const int64_t cg = g.c / g.groups, og = g.o / g.groups, kk = cg * g.kh * g.kw, p = g.oh * g.ow;
  const Strides4 xs = act_strides(g.c, g.h, g.w, g.channels_last);
  std::fill(dx, dx + g.n * xs.n, T(0));
  std::vector<T> col(static_cast<size_t>(kk * p));
  for (int64_t n = 0; n < g.n; ++n) {
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      const OutBlock ob = out_block(g, n, grp);
      CMap<T> W(w + grp * og * kk, og, kk, DynStride(kk, 1));
      CMap<T> DY(dy + ob.offset, og, p, DynStride(ob.row_stride, ob.col_stride));
      MMap<T> C(col.data(), kk, p, DynStride(p, 1));
      C.noalias() = W.transpose() * DY;
      col2im(g, col.data(), xs, grp * cg, dx + n * xs.n);
    }
  }
}

template <typename T>
void ref_bwd_weights(const ConvGeometry& g, const T* x, const T* dy, T* dw, T* db) {
  const int64_t cg = g.c / g.groups, og = g.o / g.groups, kk = cg * g.kh * g.kw, p = g.oh * g.ow;
  const Strides4 xs = act_strides(g.c, g.h, g.w, g.channels_last);
  std::fill(dw, dw + g.o * kk, T(0));
  if (db) std::fill(db, db + g.o, T(0));
  std::vector<T> col(static_cast<size_t>(kk * p));
  for (int64_t n = 0; n < g.n; ++n) {
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      im2col(g, x + n * xs.n, xs, grp * cg, col.data());
      const OutBlock ob = out_block(g, n, grp);
      CMap<T> DY(dy + ob.offset, og, p, DynStride(ob.row_stride, ob.col_stride));
      CMap<T> C(col.data(), kk, p, DynStride(p, 1));
      MMap<T> DW(dw + grp * og * kk, og, kk, DynStride(kk, 1));
      DW.noalias() += DY * C.transpose();
      if (db)
        for (int64_t o = 0; o < og; ++o) db[grp * og + o] += DY.row(o).sum();
    }
  }
}

template <typename T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.data_ptr()) : nullptr;
}

// Runs `fn.template operator()<T>(tensors...)` natively for f32/f64, and for half types on f32 copies whose
// results are copied back into `outs`.
template <typename Fn>
void with_compute_type(DType dt, std::vector<Tensor> ins, std::vector<Tensor*> outs, Fn&& fn) {
  if (dt == DType::F32 || dt == DType::F64) {
    std::vector<Tensor> o;
    for (Tensor* t : outs) o.push_back(t->defined() ? *t : Tensor());
    if (dt == DType::F32) fn(float{}, ins, o);
    else fn(double{}, ins, o);
    return;
  }
  for (Tensor& t : ins)
    if (t.defined()) t = t.to(DType::F32);
  std::vector<Tensor> o;
  for (Tensor* t : outs) o.push_back(t->defined() ? Tensor::empty(t->shape(), DType::F32, t->device()) : Tensor());
  fn(float{}, ins, o);
  for (size_t i = 0; i < outs.size(); ++i)
    if (outs[i]->defined()) outs[i]->copy_(o[i]);
}

template <typename T>
T* mut_ptr(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.data_ptr()) : nullptr;
}

void cpu_conv2d_fwd(const ConvGeometry& g, const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y) {
#ifdef KOLO_WITH_DNNL
  if (cpu::dnnl_conv_fwd(g, x, w, bias, y)) return;
#endif
  with_compute_type(x.dtype(), {x, w, bias}, {&y}, [&](auto tag, const std::vector<Tensor>& in,
                                                        std::vector<Tensor>& out) {
    using T = decltype(tag);
    ref_fwd<T>(g, ptr_or_null<T>(in[0]), ptr_or_null<T>(in[1]), ptr_or_null<T>(in[2]), mut_ptr<T>(out[0]));
  });
}

// Accumulation computes into a temporary and adds (the same passes as the engine's own sum would take).
void cpu_conv2d_bwd_data(const ConvGeometry& g, const Tensor& dy, const Tensor& w, Tensor& dx, bool accumulate) {
  if (accumulate) {
    Tensor part = Tensor::empty(dx.shape(), dx.dtype(), dx.device());
    cpu_conv2d_bwd_data(g, dy, w, part, false);
    binary_kernel()(dx.device())(BinaryOp::Add, dx, part, dx);
    return;
  }
#ifdef KOLO_WITH_DNNL
  if (cpu::dnnl_conv_bwd_data(g, dy, w, dx)) return;
#endif
  with_compute_type(dy.dtype(), {dy, w}, {&dx}, [&](auto tag, const std::vector<Tensor>& in,
                                                     std::vector<Tensor>& out) {
    using T = decltype(tag);
    ref_bwd_data<T>(g, ptr_or_null<T>(in[0]), ptr_or_null<T>(in[1]), mut_ptr<T>(out[0]));
  });
}

void cpu_conv2d_bwd_weights(const ConvGeometry& g, const Tensor& x, const Tensor& dy, Tensor& dw, Tensor& db) {
#ifdef KOLO_WITH_DNNL
  if (cpu::dnnl_conv_bwd_weights(g, x, dy, dw, db)) return;
#endif
  with_compute_type(x.dtype(), {x, dy}, {&dw, &db}, [&](auto tag, const std::vector<Tensor>& in,
                                                         std::vector<Tensor>& out) {
    using T = decltype(tag);
    ref_bwd_weights<T>(g, ptr_or_null<T>(in[0]), ptr_or_null<T>(in[1]), mut_ptr<T>(out[0]), mut_ptr<T>(out[1]));
  });
}

}  // namespace

KOLO_REGISTER_KERNEL(conv2d_fwd, CPU, cpu_conv2d_fwd);
KOLO_REGISTER_KERNEL(conv2d_bwd_data, CPU, cpu_conv2d_bwd_data);
KOLO_REGISTER_KERNEL(conv2d_bwd_weights, CPU, cpu_conv2d_bwd_weights);

}  // namespace kolo
