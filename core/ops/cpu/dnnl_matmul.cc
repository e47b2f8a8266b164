// oneDNN matmul for the gemm kernel: operands described by their strides (transposes and broadcast batches
// need no copies), alpha as output scale and beta as a sum post-op, primitives cached per shape.
// Compiled only with KOLO_WITH_DNNL (core/CMakeLists.txt globs ops/cpu/*.cc in every build).
#ifdef KOLO_WITH_DNNL
#include "core/ops/cpu/dnnl_matmul.h"

#include <optional>
#include <sstream>

#include "core/ops/cpu/dnnl_common.h"

namespace kolo::cpu {
namespace {

using dnnl::memory;

// The logical [B, R, C] operand (op applied) of a stored 3-D tensor; a zero batch stride becomes batch 1,
// which oneDNN broadcasts.
struct Operand {
  memory::dims dims, strides;
};

Operand operand(const Tensor& t, bool trans) {
  const auto& s = t.strides();
  const int64_t batch = s[0] == 0 ? 1 : t.size(0);
  const int64_t bs = s[0] == 0 ? t.size(1) * t.size(2) : s[0];
  if (trans) return {{batch, t.size(2), t.size(1)}, {bs, s[2], s[1]}};
  return {{batch, t.size(1), t.size(2)}, {bs, s[1], s[2]}};
}

struct MatmulEntry {
  std::optional<dnnl::matmul::primitive_desc> pd;
  std::optional<dnnl::matmul> prim;
};

PrimitiveCache<MatmulEntry>& matmul_cache() {
  static PrimitiveCache<MatmulEntry> cache;
  return cache;
}

void put(std::ostringstream& os, const memory::dims& d) {
  for (auto v : d) os << v << ',';
  os << ';';
}

}  // namespace

bool dnnl_gemm(const Tensor& a, const Tensor& b, Tensor& c, bool trans_a, bool trans_b, double alpha, double beta) {
  const DType dt = c.dtype();
  if (!dnnl_handles(dt)) return false;
  const Operand oa = operand(a, trans_a), ob = operand(b, trans_b);
  const memory::dims cd{c.size(0), c.size(1), c.size(2)};
  const memory::dims cs = row_major_strides(cd);
  std::ostringstream key;
  key << dtype_name(dt) << ' ' << alpha << ' ' << beta << ' ';
  put(key, oa.dims);
  put(key, oa.strides);
  put(key, ob.dims);
  put(key, ob.strides);
  put(key, cd);
  const memory::desc ad = plain_desc(oa.dims, dt, oa.strides), bd = plain_desc(ob.dims, dt, ob.strides);
  const memory::desc cdesc = plain_desc(cd, dt, cs);
  auto entry = matmul_cache().get(key.str(), [&] {
    MatmulEntry e;
    dnnl::primitive_attr attr;
    if (alpha != 1.0) attr.set_output_scales(0, {static_cast<float>(alpha)});
    if (beta != 0.0) {
      dnnl::post_ops ops;
      ops.append_sum(static_cast<float>(beta));
      attr.set_post_ops(ops);
    }
    try {
      e.pd = dnnl::matmul::primitive_desc({ad, bd, cdesc}, attr, dnnl_engine());
      e.prim = dnnl::matmul(*e.pd);
    } catch (const dnnl::error& err) {
      if (!is_unimplemented(err)) KOLO_FAIL("oneDNN matmul ", key.str(), ": ", err.what());
      e.pd.reset();
    }
    return e;
  });
  if (!entry->pd) {
    // No bf16 matmul on this CPU: compute in f32 and round once.
    if (dt == DType::F32) return false;
    Tensor af = a.to(DType::F32), bf = b.to(DType::F32), cf = c.to(DType::F32);
    if (!dnnl_gemm(af, bf, cf, trans_a, trans_b, alpha, beta)) return false;
    c.copy_(cf);
    return true;
  }
  entry->prim->execute(dnnl_stream(),
                       {{DNNL_ARG_SRC, wrap(a, ad)}, {DNNL_ARG_WEIGHTS, wrap(b, bd)}, {DNNL_ARG_DST, wrap(c, cdesc)}});
  dnnl_stream().wait();
  return true;
}

}  // namespace kolo::cpu

#endif  // KOLO_WITH_DNNL
