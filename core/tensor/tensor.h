// Tensor: a shared Storage viewed through shape, strides and an offset, plus autograd metadata.
//
// Copying a Tensor copies a handle (like torch.Tensor); views share storage. A tensor may instead be
// row-sparse (an embedding gradient): then it has no storage of its own and holds `indices` (i64, [nnz])
// and `values` ([nnz, rest...]) standing for a dense tensor of `shape()` whose rows `indices` are summed
// with `values` (duplicates allowed, as TensorFlow's IndexedSlices).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/device/device.h"
#include "core/tensor/dtype.h"
#include "core/tensor/shape.h"
#include "core/tensor/storage.h"
#include "core/util/error.h"

namespace kolo {

class Tensor;
class Generator;

namespace autograd {
class Node;
struct AutogradMeta;
}  // namespace autograd

struct SparseRows;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  Shape strides;
  DType dtype = DType::F32;
  Device device;
  std::string name;
  std::shared_ptr<autograd::AutogradMeta> autograd;
  std::shared_ptr<SparseRows> sparse;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- construction
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32,
                     Device device = Device::cpu());
  static Tensor arange(int64_t n, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor randn(const Shape& shape, Generator& gen, DType dtype = DType::F32,
                      Device device = Device::cpu());
  static Tensor uniform(const Shape& shape, double lo, double hi, Generator& gen,
                        DType dtype = DType::F32, Device device = Device::cpu());
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device = Device::cpu());
  static Tensor scalar(double value, DType dtype = DType::F32, Device device = Device::cpu());
  // Wraps external memory without copying; `release` (may be empty) runs when the last view dies.
  static Tensor from_blob(void* data, const Shape& shape, DType dtype, Device device,
                          std::function<void(void*)> release = {});
  static Tensor sparse_rows(const Tensor& indices, const Tensor& values, const Shape& dense_shape);

  // ---- metadata
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t size(int64_t d) const;
  int64_t numel() const { return shape_numel(impl().shape); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().device; }
  int64_t offset() const { return impl().offset; }
  bool is_contiguous() const;
  bool is_sparse() const { return impl().sparse != nullptr; }
  const std::string& name() const { return impl().name; }
  Tensor& set_name(const std::string& n) {
    impl().name = n;
    return *this;
  }
  std::string describe() const;  // "name f32[2, 3] cpu" for error messages

  // ---- data (dense tensors only)
  void* data_ptr() const;  // pointer to the first element (storage + offset)
  template <typename T>
  T* data() const {
    KOLO_CHECK(dtype() == dtype_of<T>, "data<", dtype_name(dtype_of<T>), ">() on ", describe());
    return static_cast<T*>(data_ptr());
  }
  template <typename T>
  std::vector<T> to_vector() const;  // contiguous copy to host, any layout
  double item() const;               // single-element tensor to double
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }

  // ---- sparse accessors
  const Tensor& sparse_indices() const;
  const Tensor& sparse_values() const;

  // ---- views (share storage; differentiable)
  Tensor reshape(const Shape& shape) const;  // copies when a view is impossible
  Tensor view(const Shape& shape) const;     // throws when not viewable
  Tensor transpose(int64_t a, int64_t b) const;
  Tensor permute(const std::vector<int64_t>& order) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor expand(const Shape& shape) const;  // stride-0 broadcast view (read only)
  Tensor as_strided(const Shape& shape, const Shape& strides, int64_t offset) const;  // not differentiable

  // ---- copies
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  Tensor to_dense() const;  // identity for dense tensors
  Tensor detach() const;    // same data, no autograd history
  void copy_(const Tensor& src);  // in place, any layouts, converting dtype; not recorded by autograd
  void fill_(double value);
  void zero_() { fill_(0.0); }

  // ---- autograd
  bool requires_grad() const;
  Tensor& set_requires_grad(bool on);
  bool is_leaf() const;
  Tensor grad() const;          // undefined until a backward pass reached this tensor
  void set_grad(const Tensor& g);
  void zero_grad();             // drops the gradient (next backward starts fresh)
  // Where this leaf's gradient lands while grad() is undefined: the first dense gradient of the leaf's shape,
  // dtype and device is copied into `slot`, which becomes grad(); later ones add to it. An optimizer's flat
  // buffer binds its slices this way, so a step needs no zero fill and no read of zeros. Undefined unbinds.
  void set_grad_slot(const Tensor& slot);
  std::shared_ptr<autograd::Node> grad_fn() const;
  // Frees the graph's saved tensors as it goes; `retain_graph` keeps them for another backward through it.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;
  // Runs once per backward pass after this leaf's gradient for that pass is complete (all uses summed).
  void register_grad_ready_hook(std::function<void(Tensor&)> hook);
  // How a leaf used both sparsely (embedding) and densely (tied output projection) accumulates:
  // false (default) sums to a dense gradient; true keeps TensorFlow's IndexedSlices semantics, where the
  // dense part is turned into rows and concatenated — the behaviour sparse_as_dense exists to avoid.
  void set_keep_sparse_grad(bool on);

  TensorImpl& impl() const {
    KOLO_CHECK(impl_ != nullptr, "use of an undefined tensor");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

struct SparseRows {
  Tensor indices;  // i64 [nnz]
  Tensor values;   // [nnz, shape[1:]...]
};

// Deterministic random numbers (Philox-like counter hashing): same seed, same tensor, on any thread count.
class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) {
    seed_ = seed;
    offset_ = offset;
  }
  // Reserves `n` counters and returns the first; element i of a draw uses counter base + i.
  uint64_t reserve(uint64_t n) {
    const uint64_t base = offset_;
    offset_ += n;
    return base;
  }
  static uint64_t hash(uint64_t seed, uint64_t counter);                 // 64 random bits
  static float uniform01(uint64_t seed, uint64_t counter);               // [0, 1)
  static float normal(uint64_t seed, uint64_t counter);                  // N(0, 1)

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
};

template <typename T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  KOLO_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_vector: ", values.size(),
             " values for shape ", shape_str(shape));
  Tensor cpu = empty(shape, dtype_of<T>, Device::cpu());
  std::copy(values.begin(), values.end(), cpu.data<T>());
  return device.is_cpu() ? cpu : cpu.to(device);
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = to(Device::cpu()).to(dtype_of<T>).contiguous();
  const T* p = c.data<T>();
  return std::vector<T>(p, p + c.numel());
}

}  // namespace kolo
