// oneDNN engine/stream, descriptors and reorders for the CPU kernels.
// Compiled only with KOLO_WITH_DNNL (core/CMakeLists.txt globs ops/cpu/*.cc in every build).
#ifdef KOLO_WITH_DNNL
#include "core/ops/cpu/dnnl_common.h"

namespace kolo::cpu {

dnnl::engine& dnnl_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::stream& dnnl_stream() {
  thread_local dnnl::stream stream(dnnl_engine());
  return stream;
}

bool dnnl_handles(DType dt) { return dt == DType::F32 || dt == DType::BF16; }

dnnl::memory::data_type dnnl_dtype(DType dt) {
  switch (dt) {
    case DType::F32: return dnnl::memory::data_type::f32;
    case DType::BF16: return dnnl::memory::data_type::bf16;
    case DType::F16: return dnnl::memory::data_type::f16;
    default: KOLO_FAIL("oneDNN: no data type for ", dtype_name(dt));
  }
}

dnnl::memory::dims row_major_strides(const dnnl::memory::dims& dims) {
  dnnl::memory::dims s(dims.size(), 1);
  for (int64_t i = static_cast<int64_t>(dims.size()) - 2; i >= 0; --i) s[i] = s[i + 1] * dims[i + 1];
  return s;
}

dnnl::memory::desc plain_desc(const dnnl::memory::dims& dims, DType dt, const dnnl::memory::dims& strides) {
  return dnnl::memory::desc(dims, dnnl_dtype(dt), strides);
}

dnnl::memory wrap(const Tensor& t, const dnnl::memory::desc& md) {
  return dnnl::memory(md, dnnl_engine(), t.data_ptr());
}

namespace {
dnnl::memory scratch(const dnnl::memory::desc& md, std::vector<Tensor>& keep) {
  keep.push_back(Tensor::empty({static_cast<int64_t>(md.get_size())}, DType::U8));
  return dnnl::memory(md, dnnl_engine(), keep.back().data_ptr());
}
}  // namespace

dnnl::memory to_layout(const dnnl::memory& user, const dnnl::memory::desc& want, std::vector<Tensor>& keep) {
  if (user.get_desc() == want) return user;
  dnnl::memory src = user, m = scratch(want, keep);
  dnnl::reorder(src, m).execute(dnnl_stream(), src, m);
  return m;
}

dnnl::memory output_in_layout(const dnnl::memory& user, const dnnl::memory::desc& have, std::vector<Tensor>& keep) {
  if (user.get_desc() == have) return user;
  return scratch(have, keep);
}

void finish_output(const dnnl::memory& produced, const dnnl::memory& user) {
  if (produced.get_data_handle() == user.get_data_handle()) return;
  dnnl::memory src = produced, dst = user;
  dnnl::reorder(src, dst).execute(dnnl_stream(), src, dst);
}

bool is_unimplemented(const dnnl::error& e) { return e.status == dnnl_unimplemented; }

}  // namespace kolo::cpu

#endif  // KOLO_WITH_DNNL
