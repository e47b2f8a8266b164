// Packing parameters into one storage and keeping their gradients in a matching flat buffer.
#include "optim/flat_buffer.h"

#include <cstring>

#include "core/autograd/grad_mode.h"
#include "core/ops/shape_ops.h"

namespace kolo {

FlatBuffer::FlatBuffer(const std::vector<Tensor>& params, const std::string& what) : params_(params), what_(what) {
  if (params_.empty()) return;
  const DType dt = params_[0].dtype();
  const Device dev = params_[0].device();
  for (const Tensor& p : params_) {
    KOLO_CHECK(p.defined() && !p.is_sparse(), what_, ": cannot pack parameter ", p.describe());
    KOLO_CHECK(p.dtype() == dt && p.device() == dev, what_, ": parameter ", p.describe(), " differs in dtype/device from ",
               params_[0].describe(), "; put it in its own parameter group");
    KOLO_CHECK(p.is_leaf(), what_, ": parameter ", p.describe(), " is not a leaf tensor");
    segments_.push_back({numel_, p.numel()});
    numel_ += p.numel();
  }
  NoGradGuard ng;
  values_ = Tensor::empty({numel_}, dt, dev);
  grads_ = Tensor::zeros({numel_}, dt, dev);
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i];
    Tensor dst = values_.slice(0, segments_[i].offset, segments_[i].offset + segments_[i].numel).view(p.shape());
    dst.copy_(p.detach());
    // Re-point the parameter itself (every handle shares this TensorImpl) at its slice of the buffer.
    TensorImpl& impl = p.impl();
    impl.storage = values_.storage();
    impl.offset = values_.offset() + segments_[i].offset;
    impl.strides = contiguous_strides(impl.shape);
  }
}

Tensor FlatBuffer::grad_slice(size_t i) const {
  KOLO_CHECK(i < params_.size(), what_, ": gradient slot ", i, " of ", params_.size());
  NoGradGuard ng;
  return grads_.slice(0, segments_[i].offset, segments_[i].offset + segments_[i].numel).view(params_[i].shape());
}

Tensor FlatBuffer::state_like() const {
  return values_.defined() ? Tensor::zeros({numel_}, values_.dtype(), values_.device()) : Tensor::zeros({0});
}

bool shares_storage(const Tensor& g, const Tensor& flat) {
  return g.defined() && !g.is_sparse() && flat.defined() && g.storage() == flat.storage();
}

void FlatBuffer::bind_grads() {
  if (!grads_.defined()) return;
  for (size_t i = 0; i < params_.size(); ++i) {
    params_[i].zero_grad();
    params_[i].set_grad_slot(grad_slice(i));
  }
}

std::vector<bool> FlatBuffer::gather_grads() {
  NoGradGuard ng;
  std::vector<bool> had(params_.size(), false);
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor g = params_[i].grad();
    if (!g.defined()) {
      grad_slice(i).zero_();
      continue;
    }
    had[i] = true;
    if (is_bound(i, g)) continue;
    Tensor slot = grad_slice(i);
    if (g.is_sparse()) {
      slot.zero_();
      index_add_rows_(slot, g.sparse_indices(), g.sparse_values().to(slot.dtype()));
    } else {
      slot.copy_(g);
    }
  }
  return had;
}

bool FlatBuffer::is_bound(size_t i, const Tensor& g) const {
  // Sharing the storage is not enough: someone may have set a different slice of the same buffer.
  return shares_storage(g, grads_) && g.offset() == grads_.offset() + segments_[i].offset && g.is_contiguous();
}

std::span<float> FlatBuffer::span(const Tensor& flat, size_t i) const {
  KOLO_CHECK(flat.numel() == numel_ && flat.is_contiguous(), what_, ": flat buffer ", flat.describe(),
             " does not match ", numel_, " packed elements");
  return {flat.data<float>() + segments_[i].offset, static_cast<size_t>(segments_[i].numel)};
}

std::span<float> FlatBuffer::all(const Tensor& flat) const {
  KOLO_CHECK(flat.numel() == numel_ && flat.is_contiguous(), what_, ": flat buffer ", flat.describe(),
             " does not match ", numel_, " packed elements");
  return {flat.data<float>(), static_cast<size_t>(numel_)};
}

}  // namespace kolo
