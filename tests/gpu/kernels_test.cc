// Every CUDA kernel of the basic and elementwise/reduction families against the CPU kernel of the same
// slot, on random inputs, for each dtype, on contiguous, strided and broadcast layouts.
#include <gtest/gtest.h>

#include <limits>

#include "core/ops/kernels/basic.h"
#include "core/ops/kernels/elementwise.h"
#include "core/ops/reduce.h"
#include "tests/gpu/gpu_test_util.h"

namespace kolo {
namespace {

using testing::GpuTest;
using testing::random_cpu;
using testing::relative_error;
using testing::tolerance;

const DType kAll[] = {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32, DType::I64, DType::U8};
const DType kFloat[] = {DType::F32, DType::F64, DType::BF16, DType::F16};

std::string name(DType t) { return dtype_name(t); }

TEST_F(GpuTest, CopyConvertsEveryDtypePairExactly) {
  for (DType s : kAll) {
    Tensor src = random_cpu({37, 129}, s, 0.0, 100.0, 1);
    Tensor gsrc = src.to(gpu());
    for (DType d : kAll) {
      Tensor want = Tensor::empty(src.shape(), d);
      copy_kernel()(Device::cpu())(want, src);
      Tensor got = Tensor::empty(src.shape(), d, gpu());
      copy_kernel()(gpu())(got, gsrc);
      EXPECT_EQ(relative_error(got, want), 0.0) << name(s) << " -> " << name(d);
    }
  }
}

TEST_F(GpuTest, CopyStridedAndBroadcastLayouts) {
  for (DType t : {DType::F32, DType::BF16, DType::I64}) {
    Tensor src = random_cpu({6, 40, 33}, t, -50.0, 50.0, 2);
    Tensor gsrc = src.to(gpu());
    // Transposed source, stepped slice, broadcast row, and a strided destination.
    struct Case {
      Tensor cpu, gpu;
    } cases[] = {{src.transpose(0, 2), gsrc.transpose(0, 2)},
                 {src.slice(1, 1, 39, 3), gsrc.slice(1, 1, 39, 3)},
                 {src.select(0, 2).slice(0, 0, 1).expand({40, 33}), gsrc.select(0, 2).slice(0, 0, 1).expand({40, 33})}};
    for (auto& c : cases) {
      Tensor want = Tensor::empty(c.cpu.shape(), DType::F32);
      copy_kernel()(Device::cpu())(want, c.cpu);
      Tensor got = Tensor::empty(c.cpu.shape(), DType::F32, gpu());
      copy_kernel()(gpu())(got, c.gpu);
      EXPECT_EQ(relative_error(got, want), 0.0) << name(t) << " " << shape_str(c.cpu.shape());
    }
    Tensor dst_cpu = Tensor::zeros({33, 40, 6}, t);
    Tensor dst_gpu = Tensor::zeros({33, 40, 6}, t, gpu());
    Tensor dv_cpu = dst_cpu.transpose(0, 2), dv_gpu = dst_gpu.transpose(0, 2);
    copy_kernel()(Device::cpu())(dv_cpu, src);
    copy_kernel()(gpu())(dv_gpu, gsrc);
    EXPECT_EQ(relative_error(dst_gpu, dst_cpu), 0.0) << name(t) << " strided destination";
  }
}

TEST_F(GpuTest, FillEveryDtypeAndLayout) {
  for (DType t : kAll) {
    for (double v : {0.0, 7.0, 1.5}) {
      Tensor want = random_cpu({17, 65}, t, 0, 3, 3);
      Tensor got = want.to(gpu());
      Tensor wv = want.slice(1, 1, 60, 2), gv = got.slice(1, 1, 60, 2);
      fill_kernel()(Device::cpu())(wv, v);
      fill_kernel()(gpu())(gv, v);
      EXPECT_EQ(relative_error(got, want), 0.0) << name(t) << " strided fill " << v;
      fill_kernel()(Device::cpu())(want, v);
      fill_kernel()(gpu())(got, v);
      EXPECT_EQ(relative_error(got, want), 0.0) << name(t) << " fill " << v;
    }
  }
}

TEST_F(GpuTest, RandomFillMatchesCpuGenerator) {
  for (DType t : kFloat) {
    Tensor want = Tensor::empty({100003}, t);
    Tensor got = Tensor::empty({100003}, t, gpu());
    fill_uniform_kernel()(Device::cpu())(want, -2.0, 3.0, 42, 1000);
    fill_uniform_kernel()(gpu())(got, -2.0, 3.0, 42, 1000);
    EXPECT_EQ(relative_error(got, want), 0.0) << "uniform " << name(t);
    fill_normal_kernel()(Device::cpu())(want, 1.0, 2.0, 7, 5);
    fill_normal_kernel()(gpu())(got, 1.0, 2.0, 7, 5);
    EXPECT_LE(relative_error(got, want), std::max(1e-6, tolerance(t))) << "normal " << name(t);
  }
}

TEST_F(GpuTest, IndexAddRowsWithDuplicatesIsDeterministicAndRangeChecked) {
  for (DType t : {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32, DType::I64}) {
    Tensor dst = random_cpu({50, 96}, t, 0, 4, 4);
    Tensor idx = random_cpu({300}, DType::I64, 0, 50, 5);
    Tensor val = random_cpu({300, 96}, t, 0, 4, 6);
    Tensor gdst = dst.to(gpu());
    Tensor again = gdst.clone();
    index_add_rows_kernel()(Device::cpu())(dst, idx, val);
    index_add_rows_kernel()(gpu())(gdst, idx.to(gpu()), val.to(gpu()));
    index_add_rows_kernel()(gpu())(again, idx.to(gpu()), val.to(gpu()));
    // Duplicates are added in input order on both devices, each add rounded alike: the CPU's result exactly
    // (half types: to within the two devices' double-to-half conversion), and the same bits on every run.
    const bool half = t == DType::BF16 || t == DType::F16;
    EXPECT_LE(relative_error(gdst, dst), half ? 1e-3 : 0.0) << name(t);
    EXPECT_EQ(relative_error(again, gdst), 0.0) << name(t);
  }
  // Many duplicates of few rows, as the gathered embedding gradient of a padded batch (the pad row).
  Tensor many = random_cpu({20000}, DType::I64, 0, 7, 8);
  Tensor vals = random_cpu({20000, 64}, DType::F32, -1, 1, 9);
  Tensor want = Tensor::zeros({7, 64}, DType::F32), got = Tensor::zeros({7, 64}, DType::F32, gpu());
  index_add_rows_kernel()(Device::cpu())(want, many, vals);
  index_add_rows_kernel()(gpu())(got, many.to(gpu()), vals.to(gpu()));
  EXPECT_EQ(relative_error(got, want), 0.0);
  Tensor gdst = Tensor::zeros({4, 3}, DType::F32, gpu());
  Tensor bad = Tensor::from_vector<int64_t>({0, 4}, {2}, gpu());
  Tensor val = Tensor::ones({2, 3}, DType::F32, gpu());
  // Reported at the next host synchronisation (a deferred device-side check), once.
  EXPECT_THROW(
      {
        index_add_rows_kernel()(gpu())(gdst, bad, val);
        (void)gdst.to_vector<float>();
      },
      Error);
  EXPECT_NO_THROW((void)gdst.to_vector<float>());
}

TEST_F(GpuTest, UnaryForwardAndBackward) {
  const UnaryOp ops[] = {UnaryOp::Neg,  UnaryOp::Exp,  UnaryOp::Log,    UnaryOp::Sqrt, UnaryOp::Rsqrt,
                         UnaryOp::Tanh, UnaryOp::Sigmoid, UnaryOp::Relu, UnaryOp::Gelu, UnaryOp::Square,
                         UnaryOp::Abs,  UnaryOp::Reciprocal};
  for (DType t : kFloat) {
    for (UnaryOp op : ops) {
      const bool positive = op == UnaryOp::Log || op == UnaryOp::Sqrt || op == UnaryOp::Rsqrt ||
                            op == UnaryOp::Reciprocal;
      Tensor x = random_cpu({33, 257}, t, positive ? 0.1 : -3.0, 3.0, 10 + static_cast<int>(op));
      Tensor gx = x.to(gpu());
      // Strided input (transpose) into a contiguous output.
      Tensor want = Tensor::empty({257, 33}, t), got = Tensor::empty({257, 33}, t, gpu());
      unary_kernel()(Device::cpu())(op, x.transpose(0, 1), want);
      unary_kernel()(gpu())(op, gx.transpose(0, 1), got);
      const double tol = std::max(tolerance(t), 1e-6);
      EXPECT_LE(relative_error(got, want), tol) << "unary " << static_cast<int>(op) << " " << name(t);
      Tensor y = Tensor::empty(x.shape(), t), gy = Tensor::empty(x.shape(), t, gpu());
      unary_kernel()(Device::cpu())(op, x, y);
      unary_kernel()(gpu())(op, gx, gy);
      Tensor grad = random_cpu(x.shape(), t, -1, 1, 99);
      Tensor wb = Tensor::empty(x.shape(), t), gb = Tensor::empty(x.shape(), t, gpu());
      unary_backward_kernel()(Device::cpu())(op, grad, x, y, wb);
      unary_backward_kernel()(gpu())(op, grad.to(gpu()), gx, y.to(gpu()), gb);
      EXPECT_LE(relative_error(gb, wb), tol) << "unary backward " << static_cast<int>(op) << " " << name(t);
    }
  }
}

TEST_F(GpuTest, BinaryWithBroadcastAndStrides) {
  const BinaryOp ops[] = {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div,
                          BinaryOp::Max, BinaryOp::Min, BinaryOp::Eq};
  for (DType t : kAll) {
    for (BinaryOp op : ops) {
      Tensor a = random_cpu({24, 130}, t, 1, 9, 20);
      Tensor b = random_cpu({24, 130}, t, 1, 9, 21);
      Tensor bias = random_cpu({1, 130}, t, 1, 9, 22);
      Tensor ga = a.to(gpu()), gb = b.to(gpu()), gbias = bias.to(gpu());
      const double tol = std::max(tolerance(t), 1e-6);
      {
        Tensor want = Tensor::empty(a.shape(), t), got = Tensor::empty(a.shape(), t, gpu());
        binary_kernel()(Device::cpu())(op, a, b, want);
        binary_kernel()(gpu())(op, ga, gb, got);
        EXPECT_LE(relative_error(got, want), tol) << "binary " << static_cast<int>(op) << " " << name(t);
      }
      {
        Tensor want = Tensor::empty(a.shape(), t), got = Tensor::empty(a.shape(), t, gpu());
        binary_kernel()(Device::cpu())(op, a, bias.expand(a.shape()), want);
        binary_kernel()(gpu())(op, ga, gbias.expand(a.shape()), got);
        EXPECT_LE(relative_error(got, want), tol) << "broadcast " << static_cast<int>(op) << " " << name(t);
      }
      {
        Tensor at = random_cpu({130, 24}, t, 1, 9, 23);
        Tensor want = Tensor::empty(a.shape(), t), got = Tensor::empty(a.shape(), t, gpu());
        binary_kernel()(Device::cpu())(op, at.transpose(0, 1), b, want);
        binary_kernel()(gpu())(op, at.to(gpu()).transpose(0, 1), gb, got);
        EXPECT_LE(relative_error(got, want), tol) << "strided " << static_cast<int>(op) << " " << name(t);
      }
    }
  }
}

TEST_F(GpuTest, AffineAndAxpy) {
  for (DType t : kFloat) {
    Tensor x = random_cpu({1000, 77}, t, -5, 5, 30);
    Tensor gx = x.to(gpu());
    const double tol = std::max(tolerance(t), 1e-6);
    Tensor want = Tensor::empty(x.shape(), t), got = Tensor::empty(x.shape(), t, gpu());
    affine_kernel()(Device::cpu())(x, 0.25, -1.5, want);
    affine_kernel()(gpu())(gx, 0.25, -1.5, got);
    EXPECT_LE(relative_error(got, want), tol) << "affine " << name(t);
    Tensor y = random_cpu(x.shape(), t, -5, 5, 31);
    Tensor gy = y.to(gpu());
    Tensor z = random_cpu({77, 1000}, t, -5, 5, 32);
    axpy_kernel()(Device::cpu())(y, z.transpose(0, 1), -0.75);
    axpy_kernel()(gpu())(gy, z.to(gpu()).transpose(0, 1), -0.75);
    EXPECT_LE(relative_error(gy, y), tol) << "axpy " << name(t);
  }
}

TEST_F(GpuTest, RowReductionsShortLongAndSplit) {
  struct Size {
    int64_t rows, inner;
  } sizes[] = {{7, 13}, {1000, 300}, {3, 100000}, {1, 3000000}, {5, 0}};
  for (DType t : {DType::F32, DType::F64, DType::BF16, DType::I64}) {
    for (auto [rows, inner] : sizes) {
      for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min}) {
        if (inner == 0 && op != ReduceOp::Sum) continue;
        Tensor x = inner == 0 ? Tensor::zeros({rows, 0}, t)
                   : t == DType::I64 ? random_cpu({rows, inner}, t, -100, 100, 41)
                                     : random_cpu({rows, inner}, t, -1, 1, 40 + rows);
        Tensor want = Tensor::empty({rows}, t), got = Tensor::empty({rows}, t, gpu());
        reduce_rows_kernel()(Device::cpu())(op, x, inner, want);
        reduce_rows_kernel()(gpu())(op, x.to(gpu()), inner, got);
        // Sums over long rows of bf16 inputs round the result once; f32 sums differ from the CPU's
        // double accumulation by the f32 tree's rounding.
        const double tol = op == ReduceOp::Sum ? std::max(tolerance(t), 1e-5) : 0.0;
        EXPECT_LE(relative_error(got, want), tol)
            << "reduce_rows " << static_cast<int>(op) << " " << name(t) << " " << rows << "x" << inner;
      }
    }
  }
}

TEST_F(GpuTest, RowReductionPropagatesNaN) {
  Tensor x = random_cpu({4, 5000}, DType::F32, -1, 1, 50);
  x.select(0, 2).select(0, 1234).fill_(std::numeric_limits<double>::quiet_NaN());
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min}) {
    Tensor want = Tensor::empty({4}, DType::F32), got = Tensor::empty({4}, DType::F32, gpu());
    reduce_rows_kernel()(Device::cpu())(op, x, 5000, want);
    reduce_rows_kernel()(gpu())(op, x.to(gpu()), 5000, got);
    EXPECT_LE(relative_error(got, want), 1e-5) << static_cast<int>(op);
  }
}

TEST_F(GpuTest, MiddleReductions) {
  struct Size {
    int64_t outer, r, inner;
  } sizes[] = {{3, 17, 5}, {2, 50000, 64}, {1, 16384, 512}, {5, 7, 1}, {70000, 3, 2}, {4, 1000, 33}};
  for (DType t : {DType::F32, DType::F64, DType::BF16}) {
    for (auto [outer, r, inner] : sizes) {
      for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min}) {
        Tensor x = random_cpu({outer, r, inner}, t, -1, 1, 60 + r);
        Tensor want = Tensor::empty({outer, inner}, t), got = Tensor::empty({outer, inner}, t, gpu());
        reduce_mid_kernel()(Device::cpu())(op, x, outer, r, inner, want);
        reduce_mid_kernel()(gpu())(op, x.to(gpu()), outer, r, inner, got);
        const double tol = op == ReduceOp::Sum ? std::max(tolerance(t), 1e-5) : 0.0;
        EXPECT_LE(relative_error(got, want), tol)
            << "reduce_mid " << static_cast<int>(op) << " " << name(t) << " " << outer << "x" << r << "x" << inner;
      }
    }
  }
}

TEST_F(GpuTest, ArgmaxLastWithTies) {
  for (DType t : {DType::F32, DType::BF16, DType::I32}) {
    for (int64_t n : {1, 10, 1000, 32000}) {
      // Few distinct values, so ties are common and the first maximum must win.
      Tensor x = random_cpu({257, n}, DType::F32, 0, 8, 70 + n).to(DType::I32).to(t);
      Tensor want = Tensor::empty({257}, DType::I64), got = Tensor::empty({257}, DType::I64, gpu());
      argmax_last_kernel()(Device::cpu())(x, want);
      argmax_last_kernel()(gpu())(x.to(gpu()), got);
      EXPECT_EQ(relative_error(got, want), 0.0) << name(t) << " n=" << n;
    }
  }
}

// NaN and infinities as the CPU kernels (and PyTorch) treat them: the first NaN is a row's argmax, and a row of
// -inf has maximum -inf (not the lowest finite value).
TEST_F(GpuTest, NonFiniteRowsMatchTheCpu) {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  for (DType t : {DType::F32, DType::F64}) {
    Tensor x = Tensor::from_vector<double>({1, nan, 0, 5, nan, 2, 3, 4, -1, -inf, -inf, -inf}, {4, 3}).to(t);
    Tensor want = Tensor::empty({4}, DType::I64), got = Tensor::empty({4}, DType::I64, gpu());
    argmax_last_kernel()(Device::cpu())(x, want);
    argmax_last_kernel()(gpu())(x.to(gpu()), got);
    EXPECT_EQ(got.to(Device::cpu()).to_vector<int64_t>(), (std::vector<int64_t>{1, 1, 1, 0})) << name(t);
    EXPECT_EQ(want.to_vector<int64_t>(), (std::vector<int64_t>{1, 1, 1, 0})) << name(t);
    const auto mx = amax(x.to(gpu()), 1).to(Device::cpu()).to_vector<double>();
    EXPECT_TRUE(std::isnan(mx[0]) && std::isnan(mx[1])) << name(t);
    EXPECT_EQ(mx[3], -inf) << name(t);
  }
}

TEST_F(GpuTest, AllFinite) {
  for (DType t : kFloat) {
    Tensor x = random_cpu({3, 100001}, t, -1, 1, 80);
    EXPECT_TRUE(all_finite_kernel()(gpu())(x.to(gpu())));
    for (double bad : {std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}) {
      Tensor y = x.clone();
      y.select(0, 2).select(0, 99999).fill_(bad);
      EXPECT_EQ(all_finite_kernel()(gpu())(y.to(gpu())), all_finite_kernel()(Device::cpu())(y)) << name(t);
      EXPECT_FALSE(all_finite_kernel()(gpu())(y.to(gpu())));
    }
  }
}

}  // namespace
}  // namespace kolo
