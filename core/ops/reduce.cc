// Reductions: permute reduced dims innermost (or use the strided column kernel), then reduce rows.
#include "core/ops/reduce.h"

#include <algorithm>
#include <numeric>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops/elementwise.h"
#include "core/ops/kernels/elementwise.h"

namespace kolo {

namespace {

std::vector<int64_t> normalize_dims(const std::vector<int64_t>& dims, int64_t ndim, const char* op) {
  std::vector<int64_t> out;
  for (int64_t d : dims) out.push_back(wrap_dim(d, ndim, op));
  std::sort(out.begin(), out.end());
  KOLO_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(), op, ": repeated dimension");
  return out;
}

Shape keep_shape(const Shape& s, const std::vector<int64_t>& dims) {
  Shape k = s;
  for (int64_t d : dims) k[d] = 1;
  return k;
}

Shape drop_shape(const Shape& s, const std::vector<int64_t>& dims) {
  Shape k;
  for (size_t i = 0; i < s.size(); ++i)
    if (!std::binary_search(dims.begin(), dims.end(), static_cast<int64_t>(i))) k.push_back(s[i]);
  return k;
}

// Reduces `x` over sorted `dims`, returning the keepdim-shaped result (no autograd).
Tensor reduce_raw(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims) {
  const Shape ks = keep_shape(x.shape(), dims);
  Tensor out = Tensor::empty(ks, x.dtype(), x.device());
  if (x.numel() == 0) {
    // Empty results ([0, 5] reduced over dim 1) are fine; a maximum over no elements is not.
    KOLO_CHECK(op == ReduceOp::Sum || out.numel() == 0, "max/min reduction over no elements of ", x.describe());
    out.zero_();
    return out;
  }
  // Contiguous block of reduced dims: a [outer, r, inner] column reduction avoids a transpose copy.
  const bool block = !dims.empty() && dims.back() - dims.front() + 1 == static_cast<int64_t>(dims.size());
  if (block && x.is_contiguous()) {
    int64_t outer = 1, r = 1, inner = 1;
    for (int64_t i = 0; i < x.dim(); ++i) {
      if (i < dims.front()) outer *= x.size(i);
      else if (i <= dims.back()) r *= x.size(i);
      else inner *= x.size(i);
    }
    if (inner == 1) reduce_rows_kernel()(x.device())(op, x, r, out);
    else reduce_mid_kernel()(x.device())(op, x, outer, r, inner, out);
    return out;
  }
  std::vector<int64_t> order;
  for (int64_t i = 0; i < x.dim(); ++i)
    if (!std::binary_search(dims.begin(), dims.end(), i)) order.push_back(i);
  int64_t inner = 1;
  for (int64_t d : dims) {
    order.push_back(d);
    inner *= x.size(d);
  }
  Tensor p = x.permute(order).contiguous();
  reduce_rows_kernel()(x.device())(op, p, inner, out);
  return out;
}

std::vector<int64_t> all_dims(int64_t n) {
  std::vector<int64_t> d(static_cast<size_t>(n));
  std::iota(d.begin(), d.end(), 0);
  return d;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  const std::vector<int64_t> dims = normalize_dims(dims_in, x.dim(), "sum");
  Tensor out;
  {
    NoGradGuard ng;
    out = reduce_raw(ReduceOp::Sum, x, dims);
    if (!keepdim) out = out.reshape(drop_shape(x.shape(), dims));
  }
  const Shape in_shape = x.shape(), ks = keep_shape(x.shape(), dims);
  autograd::record("sum", {x}, {&out}, [in_shape, ks](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {g[0].reshape(ks).expand(in_shape).contiguous()};
  });
  return out;
}

Tensor sum(const Tensor& x) { return sum(x, all_dims(x.dim()), false); }

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  const std::vector<int64_t> dims = normalize_dims(dims_in, x.dim(), "mean");
  int64_t n = 1;
  for (int64_t d : dims) n *= x.size(d);
  KOLO_CHECK(n > 0, "mean over an empty dimension of ", x.describe());
  return scale(sum(x, dims, keepdim), 1.0 / static_cast<double>(n));
}

Tensor mean(const Tensor& x) { return mean(x, all_dims(x.dim()), false); }

Tensor amax(const Tensor& x, int64_t dim_in, bool keepdim) {
  const int64_t d = wrap_dim(dim_in, x.dim(), "amax");
  Tensor out;
  {
    NoGradGuard ng;
    out = reduce_raw(ReduceOp::Max, x, {d});
  }
  Tensor kept = out.detach();
  if (!keepdim) {
    NoGradGuard ng;
    out = out.reshape(drop_shape(x.shape(), {d}));
  }
  Tensor xd = x.detach();
  autograd::record("amax", {x}, {&out}, [xd, kept, d](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    Tensor mask = Tensor::empty(xd.shape(), xd.dtype(), xd.device());
    binary_kernel()(xd.device())(BinaryOp::Eq, xd, kept.expand(xd.shape()), mask);
    Tensor count = sum(mask, {d}, true);
    return {mul(mask, div(g[0].reshape(kept.shape()), count))};
  });
  return out;
}

Tensor argmax(const Tensor& x, int64_t dim_in) {
  const int64_t d = wrap_dim(dim_in, x.dim(), "argmax");
  KOLO_CHECK(x.numel() > 0 && x.size(d) > 0, "argmax of empty ", x.describe());
  NoGradGuard ng;
  std::vector<int64_t> order;
  for (int64_t i = 0; i < x.dim(); ++i)
    if (i != d) order.push_back(i);
  order.push_back(d);
  Tensor moved = x.permute(order).contiguous();
  Tensor out = Tensor::empty(drop_shape(x.shape(), {d}), DType::I64, x.device());
  argmax_last_kernel()(x.device())(moved, out);
  return out;
}

std::pair<Tensor, Tensor> topk(const Tensor& x, int64_t k) {
  KOLO_CHECK(x.dim() >= 1, "topk: needs at least 1 dimension, got ", x.describe());
  const int64_t n = x.size(-1);
  KOLO_CHECK(k >= 1 && k <= n, "topk: k=", k, " out of range for last dimension ", n, " of ", x.describe());
  NoGradGuard ng;
  Tensor xc = x.to(Device::cpu()).to(DType::F32).contiguous();
  const int64_t rows = n ? xc.numel() / n : 0;
  Shape os = x.shape();
  os.back() = k;
  Tensor vals = Tensor::empty(os, DType::F32), idx = Tensor::empty(os, DType::I64);
  const float* px = xc.data<float>();
  float* pv = vals.data<float>();
  int64_t* pi = idx.data<int64_t>();
#pragma omp parallel for if (rows > 64)
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    const float* row = px + r * n;
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [row](int64_t a, int64_t b) {
      return row[a] > row[b] || (row[a] == row[b] && a < b);
    });
    for (int64_t j = 0; j < k; ++j) {
      pv[r * k + j] = row[order[j]];
      pi[r * k + j] = order[j];
    }
  }
  return {vals.to(x.dtype()).to(x.device()), idx.to(x.device())};
}

}  // namespace kolo
