// Bandwidth and throughput of the CUDA kernels: memory-bound kernels in GB/s (bytes read + written, the
// device-to-device copy as the ceiling) and GEMM in TFLOP/s. Median of timed repeats with CUDA events.
#include <cstdio>

#include "benchmarks/gpu/cuda_timing.h"
#include "core/device/cuda/cuda_backend.h"
#include "core/ops/kernels/basic.h"
#include "core/ops/kernels/elementwise.h"
#include "core/ops/kernels/linalg.h"
#include "core/ops/kernels/nn.h"

using namespace kolo;
using kolo::bench::median_ms;

namespace {

void row(const char* what, double bytes, double ms) {
  std::printf("%-40s %10.3f ms %10.1f GB/s\n", what, ms, bytes / ms / 1e6);
}

}  // namespace

int main() {
  if (cuda_device_count() == 0) {
    std::printf("no CUDA device visible; nothing to measure\n");
    return 0;
  }
  const Device g = Device::cuda(0);
  Generator gen(1);
  const int64_t n = int64_t{1} << 28;  // 1 GiB of f32
  Tensor a = Tensor::uniform({n}, -1, 1, gen, DType::F32, g), b = Tensor::uniform({n}, -1, 1, gen, DType::F32, g);
  Tensor c = Tensor::empty({n}, DType::F32, g);
  Tensor h = Tensor::empty({n}, DType::BF16, g);
  std::printf("%-40s %13s %15s\n", "kernel", "median", "bandwidth");
  row("copy f32 (cudaMemcpyAsync)", 8.0 * n, median_ms([&] { copy_kernel()(g)(c, a); }));
  row("copy f32 -> bf16", 6.0 * n, median_ms([&] { copy_kernel()(g)(h, a); }));
  row("copy f32 transposed 16384x16384", 8.0 * n, median_ms([&] {
        Tensor cv = c.view({16384, 16384});
        copy_kernel()(g)(cv, a.view({16384, 16384}).transpose(0, 1));
      }));
  row("fill f32 (1.0)", 4.0 * n, median_ms([&] { fill_kernel()(g)(c, 1.0); }));
  row("binary add f32", 12.0 * n, median_ms([&] { binary_kernel()(g)(BinaryOp::Add, a, b, c); }));
  Tensor hb = Tensor::uniform({n}, -1, 1, gen, DType::BF16, g), hc = Tensor::empty({n}, DType::BF16, g);
  row("binary mul bf16", 6.0 * n, median_ms([&] { binary_kernel()(g)(BinaryOp::Mul, h, hb, hc); }));
  row("unary gelu f32", 8.0 * n, median_ms([&] { unary_kernel()(g)(UnaryOp::Gelu, a, c); }));
  row("axpy f32", 12.0 * n, median_ms([&] { axpy_kernel()(g)(c, a, 0.5); }));
  Tensor s1 = Tensor::empty({1}, DType::F32, g);
  row("reduce_rows sum f32 (1 row)", 4.0 * n, median_ms([&] { reduce_rows_kernel()(g)(ReduceOp::Sum, a, n, s1); }));
  Tensor s2 = Tensor::empty({16384}, DType::F32, g);
  row("reduce_rows sum f32 (16384 rows)", 4.0 * n,
      median_ms([&] { reduce_rows_kernel()(g)(ReduceOp::Sum, a, n / 16384, s2); }));
  row("reduce_mid sum f32 [1, 16384*32, 512]", 4.0 * n / 32, median_ms([&] {
        Tensor x = a.slice(0, 0, n / 32);
        Tensor o = s2.slice(0, 0, 512);
        reduce_mid_kernel()(g)(ReduceOp::Sum, x, 1, n / 32 / 512, 512, o);
      }));
  {
    // Transformer-big's memory-bound kernels at its shapes: 16384 tokens of d_model 1024 (layer norm, the
    // residual dropout) and of the 4096-wide feed-forward hidden (dropout(relu(x)) and its backward).
    const int64_t rows = 16384, d = 1024, ff = 4096;
    Tensor x = Tensor::uniform({rows, d}, -1, 1, gen, DType::BF16, g),
           gy = Tensor::uniform({rows, d}, -1, 1, gen, DType::BF16, g);
    Tensor w = Tensor::uniform({d}, 0.5, 1.5, gen, DType::BF16, g),
           bias = Tensor::uniform({d}, -1, 1, gen, DType::BF16, g);
    Tensor y = Tensor::empty({rows, d}, DType::BF16, g), gx = Tensor::empty({rows, d}, DType::BF16, g);
    Tensor mean = Tensor::empty({rows}, DType::F32, g), rstd = Tensor::empty({rows}, DType::F32, g);
    Tensor gw = Tensor::empty({d}, DType::BF16, g), gb = Tensor::empty({d}, DType::BF16, g);
    const double tok = 2.0 * rows * d;  // bytes of one [16384, 1024] bf16 tensor
    row("layer_norm fwd bf16 16384x1024", 2 * tok,
        median_ms([&] { layer_norm_fwd_kernel()(g)(x, w, bias, 1e-5, y, mean, rstd); }));
    row("layer_norm bwd bf16 16384x1024", 3 * tok,
        median_ms([&] { layer_norm_bwd_kernel()(g)(gy, x, w, mean, rstd, gx, gw, gb); }));
    row("dropout_add bf16 16384x1024 p=0.1", 3 * tok,
        median_ms([&] { dropout_apply_kernel()(g)(x, gy, false, 0.1, 1, 0, y); }));
    Tensor hx = Tensor::uniform({rows, ff}, -1, 1, gen, DType::BF16, g), hy = Tensor::empty({rows, ff}, DType::BF16, g);
    Tensor hg = Tensor::uniform({rows, ff}, -1, 1, gen, DType::BF16, g),
           hgx = Tensor::empty({rows, ff}, DType::BF16, g);
    const double hid = 2.0 * rows * ff;
    row("relu_dropout fwd bf16 16384x4096", 2 * hid,
        median_ms([&] { dropout_apply_kernel()(g)(hx, Tensor(), true, 0.1, 1, 0, hy); }));
    row("relu_dropout bwd bf16 16384x4096", 3 * hid,
        median_ms([&] { relu_dropout_backward_kernel()(g)(hg, hy, 0.1, hgx); }));
  }
  {
    // The sparse path's densify at 2 ranks of Transformer-big: each rank's tied-embedding gradient is every row
    // of the 32768 x 1024 vocabulary plus its 16384 looked-up rows; the gathered 98304 rows are added into the
    // f32 gradient. Bytes: values read, destination read and written once.
    const int64_t vocab = 32768, d = 1024, n = 2 * (vocab + 16384);
    Tensor idx = Tensor::uniform({n}, 0, static_cast<double>(vocab), gen, DType::F64).to(DType::I64).to(g);
    Tensor vals = Tensor::uniform({n, d}, -1, 1, gen, DType::F32, g), dst = Tensor::zeros({vocab, d}, DType::F32, g);
    row("index_add_rows f32 98304 rows into 32768x1024", 4.0 * d * (n + 2 * vocab),
        median_ms([&] { index_add_rows_kernel()(g)(dst, idx, vals); }));
  }
  for (DType t : {DType::BF16, DType::F32}) {
    const int64_t m = 8192;
    Tensor x = Tensor::uniform({1, m, m}, -1, 1, gen, t, g), y = Tensor::uniform({1, m, m}, -1, 1, gen, t, g);
    Tensor z = Tensor::empty({1, m, m}, t, g);
    const double ms = median_ms([&] { gemm_kernel()(g)(x, y, z, false, false, 1.0, 0.0); }, 10);
    std::printf("%-40s %10.3f ms %10.1f TFLOP/s\n", t == DType::BF16 ? "gemm bf16 8192^3" : "gemm f32 8192^3", ms,
                2.0 * m * m * m / ms / 1e9);
  }
  const MemoryStats st = cuda_device_allocator(0).stats();
  std::printf("allocator: current %.2f GiB, peak %.2f GiB, reserved %.2f GiB, %llu allocations, %llu cache hits\n",
              st.current / 1073741824.0, st.peak / 1073741824.0, st.reserved / 1073741824.0,
              static_cast<unsigned long long>(st.allocations), static_cast<unsigned long long>(st.cache_hits));
  return 0;
}
