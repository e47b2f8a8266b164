// f32 master weights of a low-precision parameter group: gradient conversion, write-back, reload.
#include "optim/master_weights.h"

#include "core/autograd/grad_mode.h"
#include "core/ops/shape_ops.h"
#include "core/util/error.h"
#include "optim/update_kernels.h"

namespace kolo {

bool needs_master_weights(DType dtype) { return dtype == DType::BF16 || dtype == DType::F16; }

namespace {

std::vector<Tensor> f32_copies(const FlatBuffer& model) {
  NoGradGuard ng;
  std::vector<Tensor> out;
  for (const Tensor& p : model.params()) out.push_back(p.detach().to(DType::F32));
  return out;
}

}  // namespace

MasterWeights::MasterWeights(const FlatBuffer& model, const std::string& what)
    : master_(f32_copies(model), what + " f32 master weights"), model_dtype_(model.dtype()), what_(what) {
  KOLO_CHECK(needs_master_weights(model_dtype_), what_, ": master weights are for bf16/f16 parameters, got ",
             dtype_name(model_dtype_));
}

std::vector<bool> MasterWeights::load_grads(const FlatBuffer& model, float inv_scale, bool check, bool* finite) {
  NoGradGuard ng;
  bool ok = true;
  std::vector<bool> had(model.size(), false);
  if (model.numel() == 0) {
    if (finite) *finite = true;
    return had;
  }
  // A slot no gradient reached holds an earlier step's values (possibly non-finite): zero it before the pass.
  for (size_t i = 0; i < model.size(); ++i)
    if (!model.params()[i].grad().defined()) model.grad_slice(i).zero_();
  // The usual case, every gradient in its bound slot, is this one pass.
  ok = optim_kernels::unscale_to_f32(model.grads().data_ptr(), model_dtype_, master_.all(master_.grads()),
                                     inv_scale, check);
  for (size_t i = 0; i < model.size(); ++i) {
    const Tensor g = model.params()[i].grad();
    if (!g.defined()) continue;
    had[i] = true;
    if (model.is_bound(i, g)) continue;
    Tensor slot = master_.grad_slice(i);
    if (g.is_sparse()) {
      slot.zero_();
      index_add_rows_(slot, g.sparse_indices(), g.sparse_values().to(DType::F32));
    } else {
      slot.copy_(g);
    }
    const std::span<float> s = master_.span(master_.grads(), i);
    ok = optim_kernels::unscale_to_f32(s.data(), DType::F32, s, inv_scale, check) && ok;
  }
  if (finite) *finite = ok;
  return had;
}

void MasterWeights::store(const FlatBuffer& model) const {
  if (model.numel() == 0) return;
  KOLO_CHECK(model.numel() == master_.numel() && model.dtype() == model_dtype_, what_, ": model buffer ",
             model.values().describe(), " does not match ", master_.numel(), " master weights");
  optim_kernels::cast_from_f32(master_.all(master_.values()), model.values().data_ptr(), model_dtype_);
}

void MasterWeights::reload(const FlatBuffer& model) {
  if (model.numel() == 0) return;
  KOLO_CHECK(model.numel() == master_.numel() && model.dtype() == model_dtype_, what_, ": model buffer ",
             model.values().describe(), " does not match ", master_.numel(), " master weights");
  optim_kernels::unscale_to_f32(model.values().data_ptr(), model_dtype_, master_.all(master_.values()), 1.0f, false);
}

}  // namespace kolo
