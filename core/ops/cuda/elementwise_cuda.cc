// Registers the CUDA implementations of the elementwise and reduction kernel slots
// (core/ops/kernels/elementwise.h).
#include "core/device/cuda/cuda_check.h"
#include "core/ops/cuda/cuda_tensor.h"
#include "core/ops/cuda/elementwise_launch.h"
#include "core/ops/cuda/reduce_launch.h"
#include "core/ops/kernels/elementwise.h"

namespace kolo {
namespace {

void same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  KOLO_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch ", a.describe(), " vs ", b.describe());
}

void cuda_unary(UnaryOp op, const Tensor& x, Tensor& out) {
  cuda::KernelContext ctx("unary", {&x, &out});
  same_dtype("unary", x, out);
  cuda::launch_unary(op, out.data_ptr(), x.data_ptr(), x.dtype(), cuda::indexer_of<2>(out.shape(), {&out, &x}),
                     out.numel(), ctx.stream());
}

void cuda_unary_backward(UnaryOp op, const Tensor& grad, const Tensor& x, const Tensor& y, Tensor& out) {
  cuda::KernelContext ctx("unary_backward", {&grad, &x, &y, &out});
  same_dtype("unary_backward", grad, x);
  same_dtype("unary_backward", y, x);
  same_dtype("unary_backward", out, x);
  KOLO_CHECK(out.is_contiguous(), "unary_backward: output must be contiguous, got ", out.describe());
  Tensor gc = grad.contiguous(), xc = x.contiguous(), yc = y.contiguous();
  cuda::launch_unary_backward(op, out.data_ptr(), gc.data_ptr(), xc.data_ptr(), yc.data_ptr(), x.dtype(), out.numel(),
                              ctx.stream());
}

void cuda_binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  cuda::KernelContext ctx("binary", {&a, &b, &out});
  same_dtype("binary", a, out);
  same_dtype("binary", b, out);
  KOLO_CHECK(a.shape() == out.shape() && b.shape() == out.shape(), "binary: operands ", a.describe(), ", ",
             b.describe(), " not broadcast to ", out.describe());
  cuda::launch_binary(op, out.data_ptr(), a.data_ptr(), b.data_ptr(), out.dtype(),
                      cuda::indexer_of<3>(out.shape(), {&out, &a, &b}), out.numel(), ctx.stream());
}

void cuda_affine(const Tensor& x, double scale, double shift, Tensor& out) {
  cuda::KernelContext ctx("affine", {&x, &out});
  same_dtype("affine", x, out);
  cuda::launch_affine(out.data_ptr(), x.data_ptr(), x.dtype(), scale, shift,
                      cuda::indexer_of<2>(out.shape(), {&out, &x}), out.numel(), ctx.stream());
}

void cuda_axpy(Tensor& y, const Tensor& x, double alpha) {
  cuda::KernelContext ctx("axpy", {&y, &x});
  same_dtype("axpy", y, x);
  KOLO_CHECK(x.shape() == y.shape(), "axpy: ", y.describe(), " += ", x.describe());
  cuda::launch_axpy(y.data_ptr(), x.data_ptr(), y.dtype(), alpha, cuda::indexer_of<3>(y.shape(), {&y, &y, &x}),
                    y.numel(), ctx.stream());
}

void cuda_reduce_rows(ReduceOp op, const Tensor& x, int64_t inner, Tensor& out) {
  cuda::KernelContext ctx("reduce_rows", {&x, &out});
  same_dtype("reduce_rows", x, out);
  KOLO_CHECK((x.numel() == 0 || x.is_contiguous()) && out.is_contiguous(), "reduce_rows: operands must be contiguous");
  const int64_t rows = out.numel();
  KOLO_CHECK(rows * inner == x.numel(), "reduce_rows: ", x.describe(), " is not ", rows, " rows of ", inner);
  cuda::DeviceScratch scratch(ctx.device(), cuda::reduce_rows_scratch(rows, inner, x.dtype()));
  cuda::launch_reduce_rows(op, x.data_ptr(), out.data_ptr(), x.dtype(), rows, inner, scratch.get(), ctx.stream());
}

void cuda_reduce_mid(ReduceOp op, const Tensor& x, int64_t outer, int64_t r, int64_t inner, Tensor& out) {
  cuda::KernelContext ctx("reduce_mid", {&x, &out});
  same_dtype("reduce_mid", x, out);
  KOLO_CHECK((x.numel() == 0 || x.is_contiguous()) && out.is_contiguous(), "reduce_mid: operands must be contiguous");
  KOLO_CHECK(outer * r * inner == x.numel() && outer * inner == out.numel(), "reduce_mid: ", x.describe(), " -> ",
             out.describe(), " is not [", outer, ", ", r, ", ", inner, "] -> [", outer, ", ", inner, "]");
  cuda::DeviceScratch scratch(ctx.device(), cuda::reduce_mid_scratch(outer, r, inner, x.dtype()));
  cuda::launch_reduce_mid(op, x.data_ptr(), out.data_ptr(), x.dtype(), outer, r, inner, scratch.get(), ctx.stream());
}

void cuda_argmax_last(const Tensor& x, Tensor& out) {
  cuda::KernelContext ctx("argmax_last", {&x, &out});
  KOLO_CHECK(x.is_contiguous() && out.is_contiguous() && out.dtype() == DType::I64,
             "argmax_last: contiguous input and i64 output expected, got ", x.describe(), " -> ", out.describe());
  const int64_t n = x.dim() ? x.size(-1) : 1;
  KOLO_CHECK(n > 0 || out.numel() == 0, "argmax_last over an empty last dimension of ", x.describe());
  cuda::launch_argmax_last(x.data_ptr(), out.data<int64_t>(), x.dtype(), out.numel(), n, ctx.stream());
}

bool cuda_all_finite(const Tensor& x) {
  cuda::KernelContext ctx("all_finite", {&x});
  Tensor xc = x.contiguous();
  // The answer is needed on the host, so this is a sync point by nature (as the loss scaler's check is).
  cuda::DeviceScratch flag(ctx.device(), sizeof(int));
  KOLO_CUDA_CHECK(cudaMemsetAsync(flag.get(), 0, sizeof(int), ctx.stream()));
  cuda::launch_any_nonfinite(xc.data_ptr(), xc.dtype(), xc.numel(), static_cast<int*>(flag.get()), ctx.stream());
  int bad = 0;
  KOLO_CUDA_CHECK(cudaMemcpyAsync(&bad, flag.get(), sizeof(int), cudaMemcpyDeviceToHost, ctx.stream()));
  KOLO_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
  return bad == 0;
}

}  // namespace

KOLO_REGISTER_KERNEL(unary, CUDA, cuda_unary);
KOLO_REGISTER_KERNEL(unary_backward, CUDA, cuda_unary_backward);
KOLO_REGISTER_KERNEL(binary, CUDA, cuda_binary);
KOLO_REGISTER_KERNEL(affine, CUDA, cuda_affine);
KOLO_REGISTER_KERNEL(axpy, CUDA, cuda_axpy);
KOLO_REGISTER_KERNEL(reduce_rows, CUDA, cuda_reduce_rows);
KOLO_REGISTER_KERNEL(reduce_mid, CUDA, cuda_reduce_mid);
KOLO_REGISTER_KERNEL(argmax_last, CUDA, cuda_argmax_last);
KOLO_REGISTER_KERNEL(all_finite, CUDA, cuda_all_finite);

}  // namespace kolo
