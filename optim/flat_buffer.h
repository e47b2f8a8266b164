// FlatBuffer: packs a list of same-dtype parameters into one contiguous storage and re-points each
// parameter at its slice, with a matching flat gradient buffer whose slices are bound as the parameters'
// gradients. One fused pass (and one collective) can then cover a whole parameter group.
//
// Re-pointing swaps each parameter's TensorImpl storage/offset in place, so every handle the model holds
// sees the packed memory; views of a parameter taken *before* packing keep the old storage, so build the
// optimizer before caching such views. Gradients: bind_grads() drops each parameter's gradient and makes its
// slice the gradient's slot (Tensor::set_grad_slot), so the backward's first gradient is copied into the
// buffer and later ones sum in place. A slot no gradient reached holds an earlier step's values until
// gather_grads() zeroes it; a gradient that arrives in another form (row-sparse, or replaced by set_grad)
// is copied/densified into its slice there.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/tensor/tensor.h"

namespace kolo {

class FlatBuffer {
 public:
  struct Segment {
    int64_t offset = 0;  // elements from the start of the buffer
    int64_t numel = 0;
  };

  FlatBuffer() = default;
  // Packs `params` (dense, same dtype and device; values are preserved). `what` names the owner in errors.
  FlatBuffer(const std::vector<Tensor>& params, const std::string& what);

  int64_t numel() const { return numel_; }
  Device device() const { return values_.defined() ? values_.device() : Device::cpu(); }  // the parameters' device
  size_t size() const { return params_.size(); }
  DType dtype() const { return values_.defined() ? values_.dtype() : DType::F32; }
  const std::vector<Tensor>& params() const { return params_; }  // the packed parameters, in order
  const std::vector<Segment>& segments() const { return segments_; }
  const Tensor& values() const { return values_; }  // 1-D view over all parameters
  const Tensor& grads() const { return grads_; }    // 1-D flat gradient
  Tensor grad_slice(size_t i) const;                // parameter i's gradient slot, shaped like it
  Tensor state_like() const;                        // a zeroed buffer of the same size for optimizer state

  // Drops every parameter's gradient and binds its slice as the gradient's slot.
  void bind_grads();
  // Brings every parameter's current gradient into its slot (no-op for bound ones, zeros for missing).
  // Returns, per parameter, whether it had a gradient this step.
  std::vector<bool> gather_grads();

  // True when `g` is parameter i's own gradient slot (bound by bind_grads and still in place).
  bool is_bound(size_t i, const Tensor& g) const;

  std::span<float> span(const Tensor& flat, size_t i) const;  // parameter i's elements of a flat f32 buffer
  std::span<float> all(const Tensor& flat) const;

 private:
  std::vector<Tensor> params_;
  std::vector<Segment> segments_;
  Tensor values_;
  Tensor grads_;
  int64_t numel_ = 0;
  std::string what_;
};

// True when `g` is a view into `flat`'s storage (the gradient is bound to its slot).
bool shares_storage(const Tensor& g, const Tensor& flat);

}  // namespace kolo
