// CUDA GEMM (cuBLASLt) against the CPU GEMM: every transpose combination, batched and broadcast operands,
// strided views, alpha/beta, each floating dtype; the bias/ReLU/GELU and bias-gradient epilogues; and the
// linear op on its fused CUDA kernels against the CPU composite.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/ops/cuda/gemm_lt.h"
#include "core/ops/elementwise.h"
#include "core/ops/kernels/linalg.h"
#include "core/ops/linalg.h"
#include "core/ops/reduce.h"
#include "tests/gpu/gpu_test_util.h"

namespace kolo {
namespace {

using testing::GpuTest;
using testing::random_cpu;
using testing::relative_error;

double gemm_tolerance(DType t) {
  switch (t) {
    case DType::F64: return 1e-12;
    case DType::F32: return 1e-5;
    case DType::BF16: return 1e-2;
    default: return 2e-3;
  }
}

TEST_F(GpuTest, GemmMatchesCpuForEveryLayout) {
  const int64_t B = 3, M = 67, N = 45, K = 130;
  for (DType t : {DType::F32, DType::F64, DType::BF16, DType::F16}) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        for (bool broadcast_b : {false, true}) {
          Tensor a = random_cpu(ta ? Shape{B, K, M} : Shape{B, M, K}, t, -1, 1, 1);
          Tensor b = random_cpu(tb ? Shape{broadcast_b ? 1 : B, N, K} : Shape{broadcast_b ? 1 : B, K, N}, t, -1, 1, 2);
          Tensor b_use = broadcast_b ? b.expand({B, b.size(1), b.size(2)}) : b;
          Tensor gb_use = broadcast_b ? b.to(gpu()).expand({B, b.size(1), b.size(2)}) : b.to(gpu());
          Tensor c = random_cpu({B, M, N}, t, -1, 1, 3);
          Tensor gc = c.to(gpu());
          gemm_kernel()(Device::cpu())(a, b_use, c, ta, tb, 0.5, 0.25);
          gemm_kernel()(gpu())(a.to(gpu()), gb_use, gc, ta, tb, 0.5, 0.25);
          EXPECT_LE(relative_error(gc, c), gemm_tolerance(t))
              << dtype_name(t) << " ta=" << ta << " tb=" << tb << " broadcast_b=" << broadcast_b;
        }
      }
    }
  }
}

TEST_F(GpuTest, GemmTakesTransposedViewsWithoutCopies) {
  // a given as a transposed view (unit stride in dim 1), b as a column slice (row stride larger than N).
  Tensor a_store = random_cpu({2, 64, 40}, DType::F32, -1, 1, 4);
  Tensor b_store = random_cpu({2, 64, 100}, DType::F32, -1, 1, 5);
  Tensor a = a_store.transpose(1, 2), b = b_store.slice(2, 10, 60);
  Tensor c = Tensor::zeros({2, 40, 50}, DType::F32), gc = Tensor::zeros({2, 40, 50}, DType::F32, gpu());
  gemm_kernel()(Device::cpu())(a, b, c, false, false, 1.0, 0.0);
  gemm_kernel()(gpu())(a_store.to(gpu()).transpose(1, 2), b_store.to(gpu()).slice(2, 10, 60), gc, false, false, 1.0,
                       0.0);
  EXPECT_LE(relative_error(gc, c), 1e-5);
}

// Operands off 16 bytes (a bf16 view one element in; parameters packed after an odd-sized one in a flat
// buffer): cuBLASLt is told their real alignment, so it picks a kernel that takes them.
TEST_F(GpuTest, GemmOfUnderAlignedHalfOperands) {
  for (int64_t shift : {1, 3, 4}) {
    Tensor a_store = random_cpu({1, 64, 33}, DType::BF16, -1, 1, 20);
    Tensor b_store = random_cpu({1, 32, 49}, DType::BF16, -1, 1, 21);
    Tensor a = a_store.slice(2, 1, 33), b = b_store.slice(2, shift, shift + 48);  // offsets of 2 and 2*shift bytes
    Tensor c = Tensor::zeros({1, 64, 48}, DType::F32), gc = Tensor::zeros({1, 64, 48}, DType::BF16, gpu());
    gemm_kernel()(Device::cpu())(a.to(DType::F32), b.to(DType::F32), c, false, false, 1.0, 0.0);
    gemm_kernel()(gpu())(a_store.to(gpu()).slice(2, 1, 33), b_store.to(gpu()).slice(2, shift, shift + 48), gc, false,
                         false, 1.0, 0.0);
    EXPECT_LE(relative_error(gc, c), 1e-2) << "shift " << shift;
  }
  // A bias off 16 bytes goes through an aligned copy (cuBLASLt epilogues have faulted on such pointers).
  Tensor a = random_cpu({1, 64, 32}, DType::BF16, -1, 1, 22), w = random_cpu({1, 48, 32}, DType::BF16, -1, 1, 23);
  Tensor bias_store = random_cpu({49}, DType::BF16, -1, 1, 24);
  Tensor want = Tensor::empty({1, 64, 48}, DType::F32);
  gemm_kernel()(Device::cpu())(a.to(DType::F32), w.to(DType::F32), want, false, true, 1.0, 0.0);
  want = add(want, bias_store.slice(0, 1, 49).to(DType::F32));
  Tensor gc = Tensor::empty({1, 64, 48}, DType::BF16, gpu());
  cuda::gemm(a.to(gpu()), w.to(gpu()), gc, false, true, 1.0, 0.0, cuda::GemmEpilogue::Bias,
             bias_store.to(gpu()).slice(0, 1, 49));
  EXPECT_LE(relative_error(gc, want), 1e-2);
}

// An empty inner dimension: c = beta * c, and with beta 0 zeros whatever the output block held (NaN * 0 is NaN).
TEST_F(GpuTest, GemmOfAnEmptyProduct) {
  Tensor a = Tensor::empty({1, 4, 0}, DType::F32, gpu()), b = Tensor::empty({1, 0, 3}, DType::F32, gpu());
  Tensor c = Tensor::full({1, 4, 3}, std::numeric_limits<double>::quiet_NaN(), DType::F32, gpu());
  gemm_kernel()(gpu())(a, b, c, false, false, 1.0, 0.0);
  EXPECT_EQ(c.to(Device::cpu()).to_vector<float>(), std::vector<float>(12, 0.0f));
}

TEST_F(GpuTest, GemmEpilogues) {
  const int64_t M = 96, N = 80, K = 64;
  for (DType t : {DType::F32, DType::BF16}) {
    Tensor a = random_cpu({1, M, K}, t, -1, 1, 6), w = random_cpu({1, N, K}, t, -1, 1, 7);
    Tensor bias = random_cpu({N}, t, -1, 1, 8);
    Tensor plain = Tensor::empty({1, M, N}, DType::F32);
    gemm_kernel()(Device::cpu())(a.to(DType::F32), w.to(DType::F32), plain, false, true, 1.0, 0.0);
    const std::vector<double> p = plain.to_vector<double>();
    const std::vector<double> bv = bias.to_vector<double>();
    for (auto ep : {cuda::GemmEpilogue::Bias, cuda::GemmEpilogue::ReluBias, cuda::GemmEpilogue::GeluBias}) {
      std::vector<double> want(p.size());
      for (int64_t i = 0; i < M * N; ++i) {
        const double z = p[i] + bv[i % N];
        if (ep == cuda::GemmEpilogue::Bias) want[i] = z;
        else if (ep == cuda::GemmEpilogue::ReluBias) want[i] = z > 0 ? z : 0;
        else want[i] = 0.5 * z * (1 + std::tanh(0.7978845608028654 * (z + 0.044715 * z * z * z)));
      }
      Tensor gc = Tensor::empty({1, M, N}, t, gpu());
      cuda::gemm(a.to(gpu()), w.to(gpu()), gc, false, true, 1.0, 0.0, ep, bias.to(gpu()));
      EXPECT_LE(relative_error(gc, Tensor::from_vector<double>(want, {1, M, N})), t == DType::F32 ? 1e-5 : 1e-2)
          << dtype_name(t) << " epilogue " << static_cast<int>(ep);
    }
  }
}

// gw = gy^T @ x with gb = column sums of gy from the same GEMM (when cuBLASLt has the epilogue for it).
TEST_F(GpuTest, GemmBiasGradientEpilogue) {
  const int64_t rows = 200, out = 48, in = 72;
  for (DType t : {DType::F32, DType::BF16}) {
    Tensor gy = random_cpu({1, rows, out}, t, -1, 1, 11), x = random_cpu({1, rows, in}, t, -1, 1, 12);
    Tensor want_w = Tensor::empty({1, out, in}, t);
    gemm_kernel()(Device::cpu())(gy, x, want_w, true, false, 1.0, 0.0);
    Tensor want_b = sum(gy.reshape({rows, out}), {0});
    Tensor gw = Tensor::empty({1, out, in}, t, gpu()), gb = Tensor::empty({out}, t, gpu());
    const bool fused =
        cuda::try_gemm(gy.to(gpu()), x.to(gpu()), gw, true, false, 1.0, 0.0, cuda::GemmEpilogue::BiasGradA, gb);
    if (!fused) GTEST_SKIP() << "cuBLASLt offers no BGRADB algorithm here; linear falls back to a reduction";
    EXPECT_LE(relative_error(gw, want_w), gemm_tolerance(t)) << dtype_name(t);
    EXPECT_LE(relative_error(gb, want_b), t == DType::F32 ? 1e-5 : 1e-2) << dtype_name(t);
  }
}

// linear (and linear_relu) with bias: fused kernels on the GPU, matmul + add (+ relu) on the CPU; 3-D input,
// strided weight view.
TEST_F(GpuTest, LinearWithBiasMatchesCpuComposite) {
  for (bool with_relu : {false, true})
  for (DType t : {DType::F32, DType::BF16}) {
    Tensor x = random_cpu({4, 9, 40}, t, -1, 1, 21), w_t = random_cpu({40, 24}, t, -1, 1, 22);
    Tensor b = random_cpu({24}, t, -1, 1, 23), gy = random_cpu({4, 9, 24}, t, -1, 1, 24);
    auto run = [&](Device dev) {
      Tensor xd = x.to(dev).detach().set_requires_grad(true), bd = b.to(dev).detach().set_requires_grad(true);
      Tensor wt = w_t.to(dev).detach().set_requires_grad(true);
      Tensor y = with_relu ? linear_relu(xd, wt.transpose(0, 1), bd) : linear(xd, wt.transpose(0, 1), bd);
      y.backward(gy.to(dev));
      return std::vector<Tensor>{y, xd.grad(), wt.grad(), bd.grad()};
    };
    const std::vector<Tensor> want = run(Device::cpu()), got = run(gpu());
    const char* names[] = {"y", "grad x", "grad w", "grad bias"};
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_LE(relative_error(got[i], want[i]), t == DType::F32 ? 1e-5 : 1e-2)
          << dtype_name(t) << (with_relu ? " relu " : " ") << names[i];
  }
}

// The fused block keeps cuBLASLt's ReLU bit mask (hidden 200 pads each row's mask to 256 bits) and takes h's
// gradient and b1's through the DRELU_BGRAD epilogue; both widths against the CPU's linear_relu + linear.
TEST_F(GpuTest, FeedForwardMatchesCpuComposite) {
  for (int64_t hidden : {200, 256})
  for (DType t : {DType::F32, DType::BF16}) {
    Tensor x = random_cpu({3, 11, 48}, t, -1, 1, 31), w1 = random_cpu({hidden, 48}, t, -0.3, 0.3, 32);
    Tensor b1 = random_cpu({hidden}, t, -0.5, 0.5, 33), w2 = random_cpu({40, hidden}, t, -0.2, 0.2, 34);
    Tensor b2 = random_cpu({40}, t, -1, 1, 35), gy = random_cpu({3, 11, 40}, t, -1, 1, 36);
    auto run = [&](Device dev) {
      std::vector<Tensor> in;
      for (const Tensor& p : {x, w1, b1, w2, b2}) in.push_back(p.to(dev).detach().set_requires_grad(true));
      Tensor y = feed_forward(in[0], in[1], in[2], in[3], in[4]);
      y.backward(gy.to(dev));
      std::vector<Tensor> out{y};
      for (const Tensor& p : in) out.push_back(p.grad());
      return out;
    };
    const std::vector<Tensor> want = run(Device::cpu()), got = run(gpu());
    const char* names[] = {"y", "grad x", "grad w1", "grad b1", "grad w2", "grad b2"};
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_LE(relative_error(got[i], want[i]), t == DType::F32 ? 1e-5 : 3e-2)
          << dtype_name(t) << " hidden " << hidden << " " << names[i];
  }
}

// x feeds two linears, a feed-forward block and a residual: the fused backward GEMMs sum x's gradient into the
// earlier ones (beta = 1) instead of the engine adding them; the sum must equal the CPU's.
TEST_F(GpuTest, InputGradientSummedByTheGemmMatchesCpu) {
  for (DType t : {DType::F32, DType::BF16}) {
    std::vector<Tensor> params;
    for (int i = 0; i < 4; ++i) {
      params.push_back(random_cpu({32, 24}, t, -0.3, 0.3, 40 + 2 * i));
      params.push_back(random_cpu({32}, t, -0.5, 0.5, 41 + 2 * i));
    }
    Tensor w_back = random_cpu({24, 32}, t, -0.3, 0.3, 50), b_back = random_cpu({24}, t, -0.5, 0.5, 51);
    Tensor x = random_cpu({2, 7, 24}, t, -1, 1, 52), gy = random_cpu({2, 7, 24}, t, -1, 1, 53);
    auto run = [&](Device dev) {
      Tensor xd = x.to(dev).detach().set_requires_grad(true);
      std::vector<Tensor> p;
      for (const Tensor& q : params) p.push_back(q.to(dev));
      Tensor h = mul(xd, Tensor::full({1}, 1.5, t, dev));  // a non-leaf with four consumers
      Tensor a = linear(h, p[0], p[1]), b = linear_relu(h, p[2], p[3]);
      Tensor c = feed_forward(h, p[4], p[5], w_back.to(dev), b_back.to(dev));
      Tensor y = add(add(linear(add(a, b), w_back.to(dev).contiguous(), b_back.to(dev)), c), h);
      y.backward(gy.to(dev));
      return xd.grad();
    };
    EXPECT_LE(relative_error(run(gpu()), run(Device::cpu())), t == DType::F32 ? 1e-5 : 3e-2) << dtype_name(t);
  }
}

}  // namespace
}  // namespace kolo
