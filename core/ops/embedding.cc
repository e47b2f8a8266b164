// embedding: row gather whose weight gradient is row-sparse (ids + gradient rows, TensorFlow's
// IndexedSlices). The autograd engine decides how it meets a dense gradient on a tied weight (see
// Tensor::set_keep_sparse_grad).
#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops/kernels/basic.h"
#include "core/ops/kernels/nn.h"
#include "core/ops/nn.h"

namespace kolo {

Tensor embedding(const Tensor& weight, const Tensor& indices) {
  KOLO_CHECK(weight.dim() == 2, "embedding: weight must be [V, D], got ", weight.describe());
  KOLO_CHECK(indices.dtype() == DType::I64 || indices.dtype() == DType::I32,
             "embedding: ids must be integers, got ", indices.describe(), " for weight ", weight.describe());
  KOLO_CHECK(indices.device() == weight.device(), "embedding: ids ", indices.describe(), " and weight ",
             weight.describe(), " are on different devices");
  Tensor ids;
  {
    NoGradGuard ng;
    ids = indices.to(DType::I64).contiguous().reshape({indices.numel()});
  }
  const int64_t n = ids.numel(), d = weight.size(1);
  Shape out_shape = indices.shape();
  out_shape.push_back(d);
  Tensor out2 = Tensor::empty({n, d}, weight.dtype(), weight.device());
  embedding_gather_kernel()(weight.device())(weight, ids, out2);
  Tensor out = out2.view(out_shape);
  const Shape ws = weight.shape();
  // A leaf's gradient sink understands row-sparse gradients; any other producer expects a dense one.
  const bool sparse = weight.is_leaf();
  autograd::record("embedding", {weight}, {&out}, [ids, ws, n, d, sparse](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    Tensor rows = g[0].contiguous().view({n, d});
    if (sparse) return {Tensor::sparse_rows(ids, rows, ws)};
    Tensor dense = Tensor::zeros(ws, rows.dtype(), rows.device());
    index_add_rows_kernel()(rows.device())(dense, ids, rows);
    return {dense};
  });
  return out;
}

}  // namespace kolo
