// Tensor construction, views (with their backward) and copies.
#include "core/tensor/tensor.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>

#include "core/autograd/engine.h"
#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/device/device_backend.h"
#include "core/ops/kernels/basic.h"

namespace kolo {

namespace {

std::shared_ptr<TensorImpl> make_impl(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) KOLO_CHECK(d >= 0, "tensor shape ", shape_str(shape), " has a negative dimension");
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  impl->device = device;
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype), device);
  return impl;
}

Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->offset = offset;
  impl->shape = shape;
  impl->strides = strides;
  impl->dtype = base.dtype();
  impl->device = base.device();
  impl->name = base.name();
  return Tensor(impl);
}

// Strides of a view of `t` with `shape` sharing its storage, or empty if the layout does not allow it.
std::optional<Shape> view_strides(const Tensor& t, const Shape& shape) {
  if (t.is_contiguous()) return contiguous_strides(shape);
  // General case: split/merge dimension groups whose strides are compatible (as torch's computeStride).
  const Shape& old_shape = t.shape();
  const Shape& old_strides = t.strides();
  Shape out(shape.size());
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_base_stride = old_strides.empty() ? 1 : old_strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(old_shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= old_shape[d];
    if (d == 0 || (old_shape[d - 1] != 1 && old_strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base_stride = old_strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return out;
}

Shape infer_shape(const Shape& shape, int64_t numel, const char* op) {
  Shape out = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      KOLO_CHECK(infer < 0, op, ": more than one -1 in ", shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      KOLO_CHECK(out[i] >= 0, op, ": negative size in ", shape_str(shape));
      known *= out[i];
    }
  }
  if (infer >= 0) {
    KOLO_CHECK(known > 0 && numel % known == 0, op, ": cannot infer -1 in ", shape_str(shape), " for ", numel,
               " elements");
    out[infer] = numel / known;
  }
  KOLO_CHECK(shape_numel(out) == numel, op, ": shape ", shape_str(shape), " is invalid for ", numel, " elements");
  return out;
}

}  // namespace

// ---------------------------------------------------------------- construction

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  return Tensor(make_impl(shape, dtype, device));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

Tensor Tensor::scalar(double value, DType dtype, Device device) { return full({}, value, dtype, device); }

Tensor Tensor::arange(int64_t n, DType dtype, Device device) {
  KOLO_CHECK(n >= 0, "arange: negative length ", n);
  Tensor t = empty({n}, DType::F64, Device::cpu());
  double* p = t.data<double>();
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<double>(i);
  return t.to(dtype).to(device);
}

Tensor Tensor::randn(const Shape& shape, Generator& gen, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  fill_normal_kernel()(device)(t, 0.0, 1.0, gen.seed(), gen.reserve(static_cast<uint64_t>(t.numel())));
  return t;
}

Tensor Tensor::uniform(const Shape& shape, double lo, double hi, Generator& gen, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  fill_uniform_kernel()(device)(t, lo, hi, gen.seed(), gen.reserve(static_cast<uint64_t>(t.numel())));
  return t;
}

Tensor Tensor::from_blob(void* data, const Shape& shape, DType dtype, Device device,
                         std::function<void(void*)> release) {
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  impl->device = device;
  impl->storage = std::make_shared<Storage>(data, static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype),
                                            device, std::move(release));
  return Tensor(impl);
}

Tensor Tensor::sparse_rows(const Tensor& indices, const Tensor& values, const Shape& dense_shape) {
  KOLO_CHECK(indices.dtype() == DType::I64 && indices.dim() == 1, "sparse_rows: indices must be i64 [n], got ",
             indices.describe());
  KOLO_CHECK(values.dim() == static_cast<int64_t>(dense_shape.size()) && values.size(0) == indices.size(0),
             "sparse_rows: values ", values.describe(), " do not match ", indices.numel(), " indices of ",
             shape_str(dense_shape));
  for (size_t d = 1; d < dense_shape.size(); ++d)
    KOLO_CHECK(values.size(static_cast<int64_t>(d)) == dense_shape[d], "sparse_rows: values ",
               values.describe(), " do not match dense shape ", shape_str(dense_shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = dense_shape;
  impl->strides = contiguous_strides(dense_shape);
  impl->dtype = values.dtype();
  impl->device = values.device();
  impl->sparse = std::make_shared<SparseRows>(SparseRows{indices, values});
  return Tensor(impl);
}

// ---------------------------------------------------------------- metadata

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, dim(), "size")]; }

bool Tensor::is_contiguous() const {
  if (is_sparse()) return false;
  if (numel() == 0) return true;
  int64_t expected = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (shape()[i] != 1 && strides()[i] != expected) return false;
    expected *= shape()[i];
  }
  return true;
}

std::string Tensor::describe() const {
  if (!defined()) return "<undefined tensor>";
  std::string s = name().empty() ? "" : "'" + name() + "' ";
  s += std::string(dtype_name(dtype())) + shape_str(shape());
  if (!device().is_cpu()) {
    s += ' ';
    s += device().str();
  }
  if (is_sparse()) s += " (row-sparse, " + std::to_string(sparse_indices().numel()) + " rows)";
  return s;
}

void* Tensor::data_ptr() const {
  KOLO_CHECK(!is_sparse(), "data_ptr() on a row-sparse tensor ", describe(), "; call to_dense() first");
  return static_cast<char*>(storage()->data()) + offset() * static_cast<int64_t>(dtype_size(dtype()));
}

double Tensor::item() const {
  KOLO_CHECK(numel() == 1, "item() needs exactly one element, got ", describe());
  return to_vector<double>()[0];
}

const Tensor& Tensor::sparse_indices() const {
  KOLO_CHECK(is_sparse(), "sparse_indices() on dense tensor ", describe());
  return impl().sparse->indices;
}

const Tensor& Tensor::sparse_values() const {
  KOLO_CHECK(is_sparse(), "sparse_values() on dense tensor ", describe());
  return impl().sparse->values;
}

// ---------------------------------------------------------------- views

Tensor Tensor::view(const Shape& shape_in) const {
  KOLO_CHECK(!is_sparse(), "view: row-sparse tensor ", describe());
  const Shape shp = infer_shape(shape_in, numel(), "view");
  auto st = view_strides(*this, shp);
  KOLO_CHECK(st.has_value(), "view: ", describe(), " with strides ", shape_str(strides()),
             " cannot be viewed as ", shape_str(shp), "; use reshape()");
  Tensor out = make_view(*this, shp, *st, offset());
  const Shape in_shape = shape();
  autograd::record("view", {*this}, {&out}, [in_shape](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {g[0].reshape(in_shape)};
  });
  return out;
}

Tensor Tensor::reshape(const Shape& shape_in) const {
  const Shape shp = infer_shape(shape_in, numel(), "reshape");
  if (view_strides(*this, shp)) return view(shp);
  return contiguous().view(shp);
}

Tensor Tensor::transpose(int64_t a, int64_t b) const {
  std::vector<int64_t> order(static_cast<size_t>(dim()));
  std::iota(order.begin(), order.end(), 0);
  std::swap(order[wrap_dim(a, dim(), "transpose")], order[wrap_dim(b, dim(), "transpose")]);
  return permute(order);
}

Tensor Tensor::permute(const std::vector<int64_t>& order) const {
  KOLO_CHECK(static_cast<int64_t>(order.size()) == dim(), "permute: order of ", order.size(), " dims for ",
             describe());
  Shape shp(order.size()), st(order.size());
  std::vector<bool> used(order.size(), false);
  std::vector<int64_t> inverse(order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    const int64_t d = wrap_dim(order[i], dim(), "permute");
    KOLO_CHECK(!used[d], "permute: dimension ", d, " repeated");
    used[d] = true;
    shp[i] = shape()[d];
    st[i] = strides()[d];
    inverse[d] = static_cast<int64_t>(i);
  }
  Tensor out = make_view(*this, shp, st, offset());
  autograd::record("permute", {*this}, {&out}, [inverse](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {g[0].permute(inverse)};
  });
  return out;
}

Tensor Tensor::slice(int64_t d_in, int64_t start, int64_t end, int64_t step) const {
  const int64_t d = wrap_dim(d_in, dim(), "slice");
  KOLO_CHECK(step > 0, "slice: step must be positive, got ", step);
  const int64_t n = shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape shp = shape(), st = strides();
  shp[d] = (end - start + step - 1) / step;
  st[d] = strides()[d] * step;
  Tensor out = make_view(*this, shp, st, offset() + start * strides()[d]);
  const Shape in_shape = shape();
  const DType dt = dtype();
  const Device dev = device();
  autograd::record("slice", {*this}, {&out},
                   [in_shape, dt, dev, d, start, end, step](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                     Tensor gi = Tensor::zeros(in_shape, dt, dev);
                     Tensor part = gi.slice(d, start, end, step);
                     part.copy_(g[0]);
                     return {gi};
                   });
  return out;
}

Tensor Tensor::select(int64_t d_in, int64_t index) const {
  const int64_t d = wrap_dim(d_in, dim(), "select");
  const int64_t n = shape()[d];
  KOLO_CHECK(index >= -n && index < n, "select: index ", index, " out of range for dimension ", d, " of ",
             describe());
  if (index < 0) index += n;
  return slice(d, index, index + 1).squeeze(d);
}

Tensor Tensor::unsqueeze(int64_t d_in) const {
  const int64_t d = wrap_dim(d_in, dim() + 1, "unsqueeze");
  Shape shp = shape();
  shp.insert(shp.begin() + d, 1);
  return reshape(shp);
}

Tensor Tensor::squeeze(int64_t d_in) const {
  const int64_t d = wrap_dim(d_in, dim(), "squeeze");
  if (shape()[d] != 1) return *this;
  Shape shp = shape();
  shp.erase(shp.begin() + d);
  return reshape(shp);
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  const int64_t s = wrap_dim(start_dim, dim(), "flatten");
  const int64_t e = wrap_dim(end_dim, dim(), "flatten");
  KOLO_CHECK(s <= e, "flatten: start_dim ", start_dim, " after end_dim ", end_dim);
  Shape shp(shape().begin(), shape().begin() + s);
  int64_t m = 1;
  for (int64_t i = s; i <= e; ++i) m *= shape()[i];
  shp.push_back(m);
  shp.insert(shp.end(), shape().begin() + e + 1, shape().end());
  return reshape(shp);
}

Tensor Tensor::as_strided(const Shape& shp, const Shape& st, int64_t off) const {
  KOLO_CHECK(shp.size() == st.size(), "as_strided: ", shp.size(), " sizes but ", st.size(), " strides");
  return make_view(*this, shp, st, off);
}

// ---------------------------------------------------------------- copies

namespace {

// Offsets (in elements) of a view's first and one-past-last element within its storage.
std::pair<int64_t, int64_t> element_span(const Tensor& t) {
  int64_t lo = t.offset(), hi = t.offset();
  for (int64_t d = 0; d < t.dim(); ++d) {
    const int64_t reach = (t.size(d) - 1) * t.strides()[d];
    (reach < 0 ? lo : hi) += reach;
  }
  return {lo, hi + 1};
}

}  // namespace

void Tensor::copy_(const Tensor& src) {
  KOLO_CHECK(shape() == src.shape(), "copy_: destination ", describe(), " and source ", src.describe(),
             " differ in shape");
  KOLO_CHECK(!is_sparse() && !src.is_sparse(), "copy_: row-sparse tensors; call to_dense() first");
  if (numel() == 0) return;
  for (int64_t d = 0; d < dim(); ++d)
    KOLO_CHECK(strides()[d] != 0 || size(d) == 1, "copy_: destination ", describe(),
               " has elements sharing memory (an expanded view); copy into a contiguous tensor");
  // A source overlapping the destination in other places (x.copy_(x.transpose(0, 1))) is read from a copy:
  // the kernel would otherwise read elements it has already overwritten.
  const bool same_view = offset() == src.offset() && strides() == src.strides();
  if (impl().storage && impl().storage == src.impl().storage && !same_view) {
    const auto [a0, a1] = element_span(*this);
    const auto [b0, b1] = element_span(src);
    if (a0 < b1 && b0 < a1) {
      copy_(src.detach().clone());
      return;
    }
  }
  if (device() == src.device()) {
    copy_kernel()(device())(*this, src);
    return;
  }
  // Cross-device: bring src to a contiguous buffer of dst's dtype, then one backend copy.
  Tensor staged = src.to(dtype()).contiguous();
  Tensor dst_c = is_contiguous() ? *this : Tensor::empty(shape(), dtype(), device());
  const Device cuda_side = device().is_cuda() ? device() : src.device();
  device_backend(cuda_side.type).copy(dst_c.data_ptr(), device(), staged.data_ptr(), src.device(), nbytes());
  if (!dst_c.same(*this)) copy_kernel()(device())(*this, dst_c);
}

void Tensor::fill_(double value) {
  KOLO_CHECK(!is_sparse(), "fill_ on row-sparse tensor ", describe());
  if (numel()) fill_kernel()(device())(*this, value);
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  Tensor out = Tensor::empty(shape(), dtype(), device());
  out.copy_(*this);
  autograd::record("contiguous", {*this}, {&out}, [](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {g[0]};
  });
  return out;
}

Tensor Tensor::clone() const {
  if (is_sparse()) return Tensor::sparse_rows(sparse_indices().clone(), sparse_values().clone(), shape());
  Tensor out = Tensor::empty(shape(), dtype(), device());
  out.copy_(*this);
  autograd::record("clone", {*this}, {&out}, [](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {g[0]};
  });
  return out;
}

Tensor Tensor::to(DType dt) const {
  if (dt == dtype()) return *this;
  if (is_sparse()) return Tensor::sparse_rows(sparse_indices(), sparse_values().to(dt), shape());
  Tensor out = Tensor::empty(shape(), dt, device());
  out.copy_(*this);
  const DType src_dt = dtype();
  if (is_floating(dt) && is_floating(src_dt)) {
    autograd::record("to_dtype", {*this}, {&out}, [src_dt](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {g[0].to(src_dt)};
    });
  }
  return out;
}

Tensor Tensor::to(Device dev) const {
  if (dev == device()) return *this;
  if (is_sparse()) return Tensor::sparse_rows(sparse_indices().to(dev), sparse_values().to(dev), shape());
  Tensor out = Tensor::empty(shape(), dtype(), dev);
  out.copy_(*this);
  const Device src_dev = device();
  autograd::record("to_device", {*this}, {&out}, [src_dev](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {g[0].to(src_dev)};
  });
  return out;
}

Tensor Tensor::to_dense() const {
  if (!is_sparse()) return *this;
  Tensor out = Tensor::zeros(shape(), dtype(), device());
  index_add_rows_kernel()(device())(out, sparse_indices(), sparse_values().contiguous());
  return out;
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>(this->impl());
  impl->autograd.reset();
  return Tensor(impl);
}

// ---------------------------------------------------------------- autograd

bool Tensor::requires_grad() const {
  const auto& m = impl().autograd;
  return m && (m->requires_grad || m->grad_fn);
}

Tensor& Tensor::set_requires_grad(bool on) {
  KOLO_CHECK(!on || is_floating(dtype()), "requires_grad on non-floating tensor ", describe());
  auto& m = impl().autograd;
  if (!m) m = std::make_shared<autograd::AutogradMeta>();
  KOLO_CHECK(!m->grad_fn, "set_requires_grad on non-leaf tensor ", describe(), "; use detach() first");
  m->requires_grad = on;
  return *this;
}

bool Tensor::is_leaf() const { return !impl().autograd || !impl().autograd->grad_fn; }

Tensor Tensor::grad() const { return impl().autograd ? impl().autograd->grad : Tensor(); }

void Tensor::set_grad(const Tensor& g) {
  auto& m = impl().autograd;
  if (!m) m = std::make_shared<autograd::AutogradMeta>();
  KOLO_CHECK(!g.defined() || g.shape() == shape(), "set_grad: gradient ", g.describe(), " for ", describe());
  m->grad = g;
}

void Tensor::set_grad_slot(const Tensor& slot) {
  KOLO_CHECK(!slot.defined() || (slot.shape() == shape() && slot.dtype() == dtype() && slot.device() == device() &&
                                 slot.is_contiguous() && !slot.is_sparse()),
             "set_grad_slot: slot ", slot.describe(), " for ", describe(), " must be dense, contiguous and alike");
  auto& m = impl().autograd;
  if (!m) m = std::make_shared<autograd::AutogradMeta>();
  m->grad_slot = slot;
}

void Tensor::zero_grad() {
  if (impl().autograd) impl().autograd->grad = Tensor();
}

std::shared_ptr<autograd::Node> Tensor::grad_fn() const {
  return impl().autograd ? impl().autograd->grad_fn : nullptr;
}

void Tensor::backward(const Tensor& grad, bool retain_graph) const {
  Tensor g = grad;
  if (!g.defined()) {
    KOLO_CHECK(numel() == 1, "backward() without a gradient needs a scalar, got ", describe());
    g = Tensor::ones(shape(), dtype(), device());
  }
  autograd::backward({*this}, {g}, retain_graph);
}

void Tensor::register_grad_ready_hook(std::function<void(Tensor&)> hook) {
  KOLO_CHECK(is_leaf(), "grad-ready hooks are for leaf tensors (parameters), not ", describe());
  auto& m = impl().autograd;
  if (!m) m = std::make_shared<autograd::AutogradMeta>();
  m->grad_ready_hooks.push_back(std::move(hook));
}

void Tensor::set_keep_sparse_grad(bool on) {
  auto& m = impl().autograd;
  if (!m) m = std::make_shared<autograd::AutogradMeta>();
  m->keep_sparse_grad = on;
}

// ---------------------------------------------------------------- random numbers

uint64_t Generator::hash(uint64_t seed, uint64_t counter) {
  // splitmix64 over a (seed, counter) mix: stateless, so any element can be drawn independently.
  uint64_t z = seed * 0x9e3779b97f4a7c15ull + counter + 0x632be59bd9b4e019ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  z = (z ^ (z >> 29)) * 0xbf58476d1ce4e5b9ull;
  return z ^ (z >> 32);
}

float Generator::uniform01(uint64_t seed, uint64_t counter) {
  return static_cast<float>(hash(seed, counter) >> 40) * (1.0f / 16777216.0f);
}

float Generator::normal(uint64_t seed, uint64_t counter) {
  // Box-Muller from two independent 32-bit halves.
  const uint64_t h = hash(seed, counter);
  const float u1 = (static_cast<float>(h >> 40) + 1.0f) * (1.0f / 16777217.0f);
  const float u2 = static_cast<float>((h >> 8) & 0xffffffu) * (1.0f / 16777216.0f);
  return std::sqrt(-2.0f * std::log(u1)) * std::cos(6.283185307179586f * u2);
}

}  // namespace kolo
