// oneDNN convolution (forward, backward data, backward weights) and pooling, primitives cached per shape.
//
// Convolutions let oneDNN choose the internal layouts ("any") and reorder kolo's plain NCHW/OIHW buffers in
// and out, as PyTorch does for NCHW; channels-last activations are passed as NHWC directly because oneDNN's
// NHWC kernels need no reorder. Pooling always runs on the plain layout.
// Compiled only with KOLO_WITH_DNNL (core/CMakeLists.txt globs ops/cpu/*.cc in every build).
#ifdef KOLO_WITH_DNNL
#include "core/ops/cpu/dnnl_conv.h"

#include <optional>

#include "core/ops/cpu/dnnl_common.h"

namespace kolo::cpu {
namespace {

using dnnl::memory;
using tag = memory::format_tag;

memory::dims act_dims(int64_t n, int64_t c, int64_t h, int64_t w) { return {n, c, h, w}; }

memory::dims act_strides(int64_t c, int64_t h, int64_t w, bool cl) {
  if (cl) return {h * w * c, 1, w * c, c};
  return {c * h * w, h * w, w, 1};
}

memory::desc act_desc(int64_t n, int64_t c, int64_t h, int64_t w, bool cl, DType dt) {
  return plain_desc(act_dims(n, c, h, w), dt, act_strides(c, h, w, cl));
}

// Weights as oneDNN sees them: [o, c, kh, kw] or, grouped, [g, o/g, c/g, kh, kw]; kolo stores OIHW or OHWI.
memory::desc weight_desc(const ConvGeometry& g, DType dt) {
  const int64_t og = g.o / g.groups, cg = g.c / g.groups;
  if (g.groups == 1) {
    if (g.channels_last) return plain_desc({g.o, cg, g.kh, g.kw}, dt, {g.kh * g.kw * cg, 1, g.kw * cg, cg});
    return plain_desc({g.o, cg, g.kh, g.kw}, dt, {cg * g.kh * g.kw, g.kh * g.kw, g.kw, 1});
  }
  const int64_t per = cg * g.kh * g.kw;
  if (g.channels_last)
    return plain_desc({g.groups, og, cg, g.kh, g.kw}, dt, {og * per, per, 1, g.kw * cg, cg});
  return plain_desc({g.groups, og, cg, g.kh, g.kw}, dt, {og * per, per, g.kh * g.kw, g.kw, 1});
}

memory::desc any_like(const memory::desc& d, DType dt) { return memory::desc(d.dims(), dnnl_dtype(dt), tag::any); }

struct ConvDescs {
  memory::desc src, wei, dst, bias, src_any, wei_any, dst_any;
  memory::dims strides, dilates, pad_l, pad_r;
};

ConvDescs conv_descs(const ConvGeometry& g, DType dt) {
  ConvDescs d;
  d.src = act_desc(g.n, g.c, g.h, g.w, g.channels_last, dt);
  d.dst = act_desc(g.n, g.o, g.oh, g.ow, g.channels_last, dt);
  d.wei = weight_desc(g, dt);
  d.bias = plain_desc({g.o}, dt, {1});
  d.src_any = g.channels_last ? d.src : any_like(d.src, dt);
  d.dst_any = g.channels_last ? d.dst : any_like(d.dst, dt);
  d.wei_any = any_like(d.wei, dt);
  d.strides = {g.stride[0], g.stride[1]};
  d.dilates = {g.dilation[0] - 1, g.dilation[1] - 1};
  d.pad_l = {g.padding[0], g.padding[1]};
  // Symmetric padding: oneDNN's output size uses the same floor division as kolo's.
  d.pad_r = d.pad_l;
  return d;
}

dnnl::convolution_forward::primitive_desc fwd_pd(const ConvDescs& d, bool with_bias) {
  const auto prop = dnnl::prop_kind::forward_training;
  const auto algo = dnnl::algorithm::convolution_direct;
  if (with_bias)
    return {{prop, algo, d.src_any, d.wei_any, d.bias, d.dst_any, d.strides, d.dilates, d.pad_l, d.pad_r},
            dnnl_engine()};
  return {{prop, algo, d.src_any, d.wei_any, d.dst_any, d.strides, d.dilates, d.pad_l, d.pad_r}, dnnl_engine()};
}

// A cached primitive, or nothing when oneDNN has no implementation (then compute in f32).
template <typename Pd, typename Prim>
struct Cached {
  std::optional<Pd> pd;
  std::optional<Prim> prim;
};

template <typename Pd, typename Prim, typename Make>
Cached<Pd, Prim> build(Make&& make) {
  Cached<Pd, Prim> c;
  try {
    c.pd = make();
    c.prim = Prim(*c.pd);
  } catch (const dnnl::error& e) {
    if (!is_unimplemented(e)) KOLO_FAIL("oneDNN: ", e.what());
    c.pd.reset();
  }
  return c;
}

std::string conv_key(const char* what, const ConvGeometry& g, DType dt, bool bias) {
  return std::string(what) + " " + g.str() + " " + dtype_name(dt) + (bias ? " bias" : "");
}

using FwdCache = PrimitiveCache<Cached<dnnl::convolution_forward::primitive_desc, dnnl::convolution_forward>>;
using BwdDataCache =
    PrimitiveCache<Cached<dnnl::convolution_backward_data::primitive_desc, dnnl::convolution_backward_data>>;
using BwdWeiCache = PrimitiveCache<
    Cached<dnnl::convolution_backward_weights::primitive_desc, dnnl::convolution_backward_weights>>;

FwdCache& fwd_cache() {
  static FwdCache cache;
  return cache;
}
BwdDataCache& bwd_data_cache() {
  static BwdDataCache cache;
  return cache;
}
BwdWeiCache& bwd_wei_cache() {
  static BwdWeiCache cache;
  return cache;
}

Tensor f32_copy(const Tensor& t) { return t.defined() ? t.to(DType::F32) : Tensor(); }
Tensor f32_like(const Tensor& t) { return t.defined() ? Tensor::empty(t.shape(), DType::F32, t.device()) : Tensor(); }

}  // namespace

bool dnnl_conv_fwd(const ConvGeometry& g, const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y) {
  const DType dt = x.dtype();
  if (!dnnl_handles(dt)) return false;
  const bool has_bias = bias.defined();
  auto c = fwd_cache().get(conv_key("conv_fwd", g, dt, has_bias), [&] {
    const ConvDescs d = conv_descs(g, dt);
    return build<dnnl::convolution_forward::primitive_desc, dnnl::convolution_forward>(
        [&] { return fwd_pd(d, has_bias); });
  });
  if (!c->pd) {
    Tensor yf = f32_like(y);
    dnnl_conv_fwd(g, f32_copy(x), f32_copy(w), f32_copy(bias), yf);
    y.copy_(yf);
    return true;
  }
  const ConvDescs d = conv_descs(g, dt);
  std::vector<Tensor> keep;
  memory src = to_layout(wrap(x, d.src), c->pd->src_desc(), keep);
  memory wei = to_layout(wrap(w, d.wei), c->pd->weights_desc(), keep);
  memory user_dst = wrap(y, d.dst);
  memory dst = output_in_layout(user_dst, c->pd->dst_desc(), keep);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}};
  if (has_bias) args.emplace(DNNL_ARG_BIAS, wrap(bias, d.bias));
  c->prim->execute(dnnl_stream(), args);
  finish_output(dst, user_dst);
  dnnl_stream().wait();
  return true;
}

bool dnnl_conv_bwd_data(const ConvGeometry& g, const Tensor& dy, const Tensor& w, Tensor& dx) {
  const DType dt = dy.dtype();
  if (!dnnl_handles(dt)) return false;
  auto c = bwd_data_cache().get(conv_key("conv_bwd_data", g, dt, false), [&] {
    const ConvDescs d = conv_descs(g, dt);
    return build<dnnl::convolution_backward_data::primitive_desc, dnnl::convolution_backward_data>([&] {
      const auto hint = fwd_pd(d, false);
      return dnnl::convolution_backward_data::primitive_desc(
          {dnnl::algorithm::convolution_direct, d.src_any, d.wei_any, d.dst_any, d.strides, d.dilates, d.pad_l,
           d.pad_r},
          dnnl_engine(), hint);
    });
  });
  if (!c->pd) {
    Tensor dxf = f32_like(dx);
    dnnl_conv_bwd_data(g, f32_copy(dy), f32_copy(w), dxf);
    dx.copy_(dxf);
    return true;
  }
  const ConvDescs d = conv_descs(g, dt);
  std::vector<Tensor> keep;
  memory ddst = to_layout(wrap(dy, d.dst), c->pd->diff_dst_desc(), keep);
  memory wei = to_layout(wrap(w, d.wei), c->pd->weights_desc(), keep);
  memory user_dsrc = wrap(dx, d.src);
  memory dsrc = output_in_layout(user_dsrc, c->pd->diff_src_desc(), keep);
  c->prim->execute(dnnl_stream(), {{DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DIFF_SRC, dsrc}});
  finish_output(dsrc, user_dsrc);
  dnnl_stream().wait();
  return true;
}

bool dnnl_conv_bwd_weights(const ConvGeometry& g, const Tensor& x, const Tensor& dy, Tensor& dw, Tensor& db) {
  const DType dt = x.dtype();
  if (!dnnl_handles(dt)) return false;
  const bool has_bias = db.defined();
  auto c = bwd_wei_cache().get(conv_key("conv_bwd_weights", g, dt, has_bias), [&] {
    const ConvDescs d = conv_descs(g, dt);
    return build<dnnl::convolution_backward_weights::primitive_desc, dnnl::convolution_backward_weights>([&] {
      auto make = [&](const ConvDescs& dd) {
        const auto hint = fwd_pd(dd, has_bias);
        const auto algo = dnnl::algorithm::convolution_direct;
        if (has_bias)
          return dnnl::convolution_backward_weights::primitive_desc(
              {algo, dd.src_any, dd.wei_any, dd.bias, dd.dst_any, dd.strides, dd.dilates, dd.pad_l, dd.pad_r},
              dnnl_engine(), hint);
        return dnnl::convolution_backward_weights::primitive_desc(
            {algo, dd.src_any, dd.wei_any, dd.dst_any, dd.strides, dd.dilates, dd.pad_l, dd.pad_r}, dnnl_engine(),
            hint);
      };
      auto pd = make(d);
      // oneDNN 2.6 has no blocked-layout JIT for the weight gradient of grouped convolutions with few
      // channels per group and falls back to its GEMM version (measured 2x slower than its NHWC JIT kernel on
      // ResNeXt-like shapes); asking for NHWC activations there costs two cheap reorders.
      if (!g.channels_last && g.groups > 1 && std::string(pd.impl_info_str()).find("gemm") != std::string::npos) {
        ConvDescs nhwc = d;
        nhwc.src_any = memory::desc(d.src.dims(), dnnl_dtype(dt), tag::nhwc);
        nhwc.dst_any = memory::desc(d.dst.dims(), dnnl_dtype(dt), tag::nhwc);
        pd = make(nhwc);
      }
      return pd;
    });
  });
  if (!c->pd) {
    Tensor dwf = f32_like(dw), dbf = f32_like(db);
    dnnl_conv_bwd_weights(g, f32_copy(x), f32_copy(dy), dwf, dbf);
    dw.copy_(dwf);
    if (has_bias) db.copy_(dbf);
    return true;
  }
  const ConvDescs d = conv_descs(g, dt);
  std::vector<Tensor> keep;
  memory src = to_layout(wrap(x, d.src), c->pd->src_desc(), keep);
  memory ddst = to_layout(wrap(dy, d.dst), c->pd->diff_dst_desc(), keep);
  memory user_dwei = wrap(dw, d.wei);
  memory dwei = output_in_layout(user_dwei, c->pd->diff_weights_desc(), keep);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_DIFF_WEIGHTS, dwei}};
  memory user_dbias, dbias;
  if (has_bias) {
    user_dbias = wrap(db, d.bias);
    dbias = output_in_layout(user_dbias, c->pd->query_md(dnnl::query::diff_weights_md, 1), keep);
    args.emplace(DNNL_ARG_DIFF_BIAS, dbias);
  }
  c->prim->execute(dnnl_stream(), args);
  finish_output(dwei, user_dwei);
  if (has_bias) finish_output(dbias, user_dbias);
  dnnl_stream().wait();
  return true;
}

// ---- pooling

namespace {

struct PoolDescs {
  memory::desc src, dst;
  memory::dims strides, kernel, pad_l, pad_r;
  dnnl::algorithm algo;
};

PoolDescs pool_descs(PoolKind kind, const PoolGeometry& g, DType dt) {
  PoolDescs d;
  d.src = act_desc(g.n, g.c, g.h, g.w, g.channels_last, dt);
  d.dst = act_desc(g.n, g.c, g.oh, g.ow, g.channels_last, dt);
  d.strides = {g.stride[0], g.stride[1]};
  d.kernel = {g.kernel[0], g.kernel[1]};
  d.pad_l = {g.padding[0], g.padding[1]};
  d.pad_r = d.pad_l;
  d.algo = kind == PoolKind::Max ? dnnl::algorithm::pooling_max : dnnl::algorithm::pooling_avg_exclude_padding;
  return d;
}

dnnl::pooling_forward::primitive_desc pool_fwd_pd(const PoolDescs& d, dnnl::prop_kind prop) {
  return {{prop, d.algo, d.src, d.dst, d.strides, d.kernel, d.pad_l, d.pad_r}, dnnl_engine()};
}

std::string pool_key(const char* what, PoolKind kind, const PoolGeometry& g, DType dt, bool train) {
  return std::string(what) + (kind == PoolKind::Max ? " max " : " avg ") + g.str() + " " + dtype_name(dt) +
         (train ? " train" : "");
}

using PoolFwdCache = PrimitiveCache<Cached<dnnl::pooling_forward::primitive_desc, dnnl::pooling_forward>>;
using PoolBwdCache = PrimitiveCache<Cached<dnnl::pooling_backward::primitive_desc, dnnl::pooling_backward>>;

PoolFwdCache& pool_fwd_cache() {
  static PoolFwdCache cache;
  return cache;
}
PoolBwdCache& pool_bwd_cache() {
  static PoolBwdCache cache;
  return cache;
}

}  // namespace

bool dnnl_pool_fwd(PoolKind kind, const PoolGeometry& g, const Tensor& x, Tensor& y, bool need_workspace,
                   Tensor& workspace) {
  const DType dt = x.dtype();
  if (!dnnl_handles(dt)) return false;
  const bool train = need_workspace && kind == PoolKind::Max;
  auto c = pool_fwd_cache().get(pool_key("pool_fwd", kind, g, dt, train), [&] {
    const PoolDescs d = pool_descs(kind, g, dt);
    return build<dnnl::pooling_forward::primitive_desc, dnnl::pooling_forward>([&] {
      return pool_fwd_pd(d, train ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference);
    });
  });
  // No bf16 pooling on this CPU: the loop kernels do it (pooling is memory-bound, f32 copies gain nothing).
  if (!c->pd) return false;
  const PoolDescs d = pool_descs(kind, g, dt);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, wrap(x, d.src)}, {DNNL_ARG_DST, wrap(y, d.dst)}};
  if (train) {
    const memory::desc wsd = c->pd->workspace_desc();
    workspace = Tensor::empty({static_cast<int64_t>(wsd.get_size())}, DType::U8);
    args.emplace(DNNL_ARG_WORKSPACE, wrap(workspace, wsd));
  }
  c->prim->execute(dnnl_stream(), args);
  dnnl_stream().wait();
  return true;
}

bool dnnl_pool_bwd(PoolKind kind, const PoolGeometry& g, const Tensor& dy, const Tensor& workspace, Tensor& dx) {
  const DType dt = dy.dtype();
  if (!dnnl_handles(dt)) return false;
  if (kind == PoolKind::Max && !workspace.defined()) return false;
  auto c = pool_bwd_cache().get(pool_key("pool_bwd", kind, g, dt, true), [&] {
    const PoolDescs d = pool_descs(kind, g, dt);
    return build<dnnl::pooling_backward::primitive_desc, dnnl::pooling_backward>([&] {
      const auto hint = pool_fwd_pd(d, dnnl::prop_kind::forward_training);
      return dnnl::pooling_backward::primitive_desc(
          {d.algo, d.src, d.dst, d.strides, d.kernel, d.pad_l, d.pad_r}, dnnl_engine(), hint);
    });
  });
  if (!c->pd) return false;
  const PoolDescs d = pool_descs(kind, g, dt);
  std::unordered_map<int, memory> args{{DNNL_ARG_DIFF_DST, wrap(dy, d.dst)}, {DNNL_ARG_DIFF_SRC, wrap(dx, d.src)}};
  if (kind == PoolKind::Max) args.emplace(DNNL_ARG_WORKSPACE, wrap(workspace, c->pd->workspace_desc()));
  c->prim->execute(dnnl_stream(), args);
  dnnl_stream().wait();
  return true;
}

}  // namespace kolo::cpu

#endif  // KOLO_WITH_DNNL
