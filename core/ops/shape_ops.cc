// Concatenation and stacking (backward slices the gradient back apart), row scatter-add.
#include "core/ops/shape_ops.h"

#include <algorithm>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops/kernels/basic.h"

namespace kolo {

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim_in) {
  KOLO_CHECK(!tensors.empty(), "cat: no tensors");
  const Tensor& first = tensors[0];
  const int64_t d = wrap_dim(dim_in, first.dim(), "cat");
  Shape out_shape = first.shape();
  int64_t total = 0;
  for (const Tensor& t : tensors) {
    KOLO_CHECK(t.dim() == first.dim() && t.dtype() == first.dtype() && t.device() == first.device(),
               "cat: ", t.describe(), " does not match ", first.describe());
    for (int64_t i = 0; i < t.dim(); ++i)
      KOLO_CHECK(i == d || t.size(i) == first.size(i), "cat: ", t.describe(), " does not match ",
                 first.describe(), " outside dimension ", d);
    total += t.size(d);
  }
  out_shape[d] = total;
  Tensor out = Tensor::empty(out_shape, first.dtype(), first.device());
  std::vector<int64_t> starts;
  int64_t at = 0;
  {
    NoGradGuard ng;
    for (const Tensor& t : tensors) {
      starts.push_back(at);
      Tensor part = out.slice(d, at, at + t.size(d));
      part.copy_(t);
      at += t.size(d);
    }
  }
  std::vector<int64_t> sizes;
  for (const Tensor& t : tensors) sizes.push_back(t.size(d));
  autograd::record("cat", tensors, {&out}, [starts, sizes, d](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    std::vector<Tensor> gs;
    for (size_t i = 0; i < starts.size(); ++i) gs.push_back(g[0].slice(d, starts[i], starts[i] + sizes[i]));
    return gs;
  });
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  KOLO_CHECK(!tensors.empty(), "stack: no tensors");
  std::vector<Tensor> us;
  const int64_t d = wrap_dim(dim, tensors[0].dim() + 1, "stack");
  for (const Tensor& t : tensors) us.push_back(t.unsqueeze(d));
  return cat(us, d);
}

void index_add_rows_(Tensor& y, const Tensor& indices, const Tensor& values) {
  KOLO_CHECK(y.device() == indices.device() && y.device() == values.device(), "index_add_rows_: device mismatch");
  KOLO_CHECK(indices.dtype() == DType::I64, "index_add_rows_: indices must be i64, got ", indices.describe());
  KOLO_CHECK(indices.dim() == 1, "index_add_rows_: indices must be 1-d, got ", indices.describe());
  KOLO_CHECK(y.dim() >= 1 && values.dim() == y.dim() && values.size(0) == indices.numel() &&
                 std::equal(values.shape().begin() + 1, values.shape().end(), y.shape().begin() + 1),
             "index_add_rows_: values ", values.describe(), " are not ", indices.numel(), " rows of ", y.describe());
  Tensor v = values.dtype() == y.dtype() ? values.contiguous() : values.to(y.dtype()).contiguous();
  index_add_rows_kernel()(y.device())(y, indices.contiguous(), v);
}

}  // namespace kolo
