// Registers the CUDA implementations of the basic kernel slots (core/ops/kernels/basic.h).
#include <limits>

#include "core/device/cuda/cuda_check.h"
#include "core/device/cuda/deferred_errors.h"
#include "core/ops/cuda/basic_launch.h"
#include "core/ops/cuda/cuda_tensor.h"
#include "core/ops/kernels/basic.h"

namespace kolo {
namespace {

void cuda_copy(Tensor& dst, const Tensor& src) {
  cuda::KernelContext ctx("copy", {&dst, &src});
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {
    KOLO_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), dst.nbytes(), cudaMemcpyDeviceToDevice,
                                    ctx.stream()));
    return;
  }
  cuda::launch_copy(dst.data_ptr(), dst.dtype(), src.data_ptr(), src.dtype(),
                    cuda::indexer_of<2>(dst.shape(), {&dst, &src}), dst.numel(), ctx.stream());
}

void cuda_fill(Tensor& dst, double value) {
  cuda::KernelContext ctx("fill", {&dst});
  cuda::launch_fill(dst.data_ptr(), dst.dtype(), value, cuda::indexer_of<1>(dst.shape(), {&dst}), dst.numel(),
                    ctx.stream());
}

void fill_random(const char* op, Tensor& dst, bool normal, double a, double b, uint64_t seed, uint64_t base) {
  cuda::KernelContext ctx(op, {&dst});
  KOLO_CHECK(dst.is_contiguous(), op, " needs a contiguous tensor, got ", dst.describe());
  KOLO_CHECK(is_floating(dst.dtype()), op, " of non-floating tensor ", dst.describe());
  cuda::launch_fill_random(dst.data_ptr(), dst.dtype(), normal, a, b, seed, base, dst.numel(), ctx.stream());
}

void cuda_fill_uniform(Tensor& dst, double lo, double hi, uint64_t seed, uint64_t base) {
  fill_random("fill_uniform", dst, false, lo, hi, seed, base);
}

void cuda_fill_normal(Tensor& dst, double mean, double std, uint64_t seed, uint64_t base) {
  fill_random("fill_normal", dst, true, mean, std, seed, base);
}

void cuda_index_add_rows(Tensor& dst, const Tensor& indices, const Tensor& values) {
  cuda::KernelContext ctx("index_add_rows", {&dst, &indices, &values});
  KOLO_CHECK(dst.is_contiguous() && values.is_contiguous() && indices.is_contiguous(),
             "index_add_rows: operands must be contiguous");
  KOLO_CHECK(dst.dtype() == values.dtype(), "index_add_rows: dtype ", dtype_name(dst.dtype()), " vs ",
             dtype_name(values.dtype()));
  KOLO_CHECK(indices.dtype() == DType::I64, "index_add_rows: indices must be i64, got ", indices.describe());
  const int64_t rows = dst.dim() ? dst.size(0) : 1;
  const int64_t width = rows ? dst.numel() / rows : 0;
  const int64_t n = indices.numel();
  KOLO_CHECK(values.numel() == n * width, "index_add_rows: ", values.describe(), " for ", n, " indices of rows of ",
             width, " in ", dst.describe());
  if (n == 0 || width == 0) return;
  KOLO_CHECK(n <= std::numeric_limits<int>::max(), "index_add_rows: ", n, " indices; at most 2^31 - 1 at once");
  // Out-of-range indices are counted on the device and reported at the next host synchronisation.
  int* bad = cuda::DeferredCheck::get("index_add_rows", ctx.device())
                 .arm(detail::concat("index_add_rows: indices out of range [0, ", rows, ") for ", dst.describe()));
  cuda::DeviceScratch scratch(ctx.device(), cuda::index_add_rows_scratch_bytes(n, width));
  cuda::launch_index_add_rows(dst.data_ptr(), dst.dtype(), indices.data<int64_t>(), values.data_ptr(), n, width,
                              rows, bad, scratch.get(), ctx.stream());
}

}  // namespace

KOLO_REGISTER_KERNEL(copy, CUDA, cuda_copy);
KOLO_REGISTER_KERNEL(fill, CUDA, cuda_fill);
KOLO_REGISTER_KERNEL(fill_uniform, CUDA, cuda_fill_uniform);
KOLO_REGISTER_KERNEL(fill_normal, CUDA, cuda_fill_normal);
KOLO_REGISTER_KERNEL(index_add_rows, CUDA, cuda_index_add_rows);

}  // namespace kolo
