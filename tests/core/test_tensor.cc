// Tensor construction, views, copies, dtype conversion and bad-input errors.
#include <gtest/gtest.h>

#include "core/ops/elementwise.h"
#include "core/tensor/tensor.h"

using namespace kolo;

TEST(Tensor, ZerosOnesFull) {
  Tensor z = Tensor::zeros({2, 3});
  EXPECT_EQ(z.numel(), 6);
  for (float v : z.to_vector<float>()) EXPECT_EQ(v, 0.f);
  for (double v : Tensor::full({4}, 2.5, DType::F64).to_vector<double>()) EXPECT_EQ(v, 2.5);
  EXPECT_EQ(Tensor::ones({0, 3}).numel(), 0);
}

TEST(Tensor, TransposeIsAViewAndContiguousCopies) {
  Tensor a = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor t = a.transpose(0, 1);
  EXPECT_EQ(t.shape(), (Shape{3, 2}));
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.storage(), a.storage());
  EXPECT_EQ(t.contiguous().to_vector<float>(), (std::vector<float>{1, 4, 2, 5, 3, 6}));
}

TEST(Tensor, SliceSelectPermuteReshape) {
  Tensor a = Tensor::arange(24).reshape({2, 3, 4});
  EXPECT_EQ(a.slice(2, 1, 4, 2).to_vector<float>(), (std::vector<float>{1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23}));
  EXPECT_EQ(a.select(1, -1).to_vector<float>(), (std::vector<float>{8, 9, 10, 11, 20, 21, 22, 23}));
  Tensor p = a.permute({2, 0, 1});
  EXPECT_EQ(p.shape(), (Shape{4, 2, 3}));
  EXPECT_EQ(p.select(0, 1).to_vector<float>(), (std::vector<float>{1, 5, 9, 13, 17, 21}));
  // reshape of a non-viewable layout copies; of a viewable one shares storage.
  EXPECT_NE(p.reshape({24}).storage(), a.storage());
  EXPECT_EQ(p.reshape({4, 6}).storage(), a.storage());  // dims 1 and 2 still merge
  EXPECT_EQ(a.reshape({6, -1}).storage(), a.storage());
  EXPECT_EQ(a.flatten(1).shape(), (Shape{2, 12}));
}

TEST(Tensor, DtypeRoundTrips) {
  Tensor a = Tensor::from_vector<float>({1.0f, -2.5f, 3.140625f, 65504.f, 1e-7f}, {5});
  const auto bf = a.to(DType::BF16).to_vector<float>();
  EXPECT_EQ(bf[0], 1.0f);
  EXPECT_EQ(bf[1], -2.5f);
  EXPECT_EQ(bf[2], 3.140625f);
  const auto h = a.to(DType::F16).to_vector<float>();
  EXPECT_EQ(h[3], 65504.f);
  EXPECT_NEAR(h[4], 1e-7f, 6e-8f);  // f16 subnormal
  EXPECT_EQ(a.to(DType::I64).to_vector<int64_t>(), (std::vector<int64_t>{1, -2, 3, 65504, 0}));
}

TEST(Tensor, RandomIsDeterministic) {
  Generator g1(42), g2(42);
  EXPECT_EQ(Tensor::randn({100}, g1).to_vector<float>(), Tensor::randn({100}, g2).to_vector<float>());
  const auto u = Tensor::uniform({1000}, -1, 1, g1).to_vector<float>();
  for (float v : u) EXPECT_TRUE(v >= -1 && v < 1);
}

TEST(Tensor, SparseRowsToDense) {
  Tensor idx = Tensor::from_vector<int64_t>({2, 0, 2}, {3});
  Tensor val = Tensor::from_vector<float>({1, 1, 2, 2, 3, 3}, {3, 2});
  Tensor s = Tensor::sparse_rows(idx, val, {4, 2});
  EXPECT_TRUE(s.is_sparse());
  EXPECT_EQ(s.to_dense().to_vector<float>(), (std::vector<float>{2, 2, 0, 0, 4, 4, 0, 0}));
  Tensor bad = Tensor::sparse_rows(Tensor::from_vector<int64_t>({9}, {1}), Tensor::ones({1, 2}), {4, 2});
  EXPECT_THROW(bad.to_dense(), Error);
}

TEST(Tensor, BadInputsThrowWithContext) {
  Tensor a = Tensor::zeros({2, 3});
  a.set_name("acts");
  try {
    a.view({4, 2});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[4, 2]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(a.transpose(0, 5), Error);
  EXPECT_THROW(Tensor::zeros({-1}), Error);
  EXPECT_THROW(a.data<double>(), Error);
  EXPECT_THROW(add(a, Tensor::zeros({4})), Error);
  EXPECT_THROW(add(a, Tensor::zeros({2, 3}, DType::F64)), Error);
  EXPECT_THROW(parse_device("tpu"), Error);
  // The failed ops left the data intact.
  EXPECT_EQ(a.shape(), (Shape{2, 3}));
}

// A source overlapping the destination is read before it is overwritten (in-place transpose); a destination
// whose elements share memory (an expanded view) is refused.
TEST(Tensor, CopyBetweenOverlappingViews) {
  Tensor x = Tensor::from_vector<float>({1, 2, 3, 4}, {2, 2});
  x.copy_(x.transpose(0, 1));
  EXPECT_EQ(x.to_vector<float>(), (std::vector<float>{1, 3, 2, 4}));
  Tensor row = Tensor::from_vector<float>({1, 2, 3, 4, 5}, {5});
  row.slice(0, 1, 5).copy_(row.slice(0, 0, 4));  // shift right by one, as memmove would
  EXPECT_EQ(row.to_vector<float>(), (std::vector<float>{1, 1, 2, 3, 4}));
  Tensor e = Tensor::zeros({3}).unsqueeze(0).expand({2, 3});
  EXPECT_THROW(e.copy_(Tensor::ones({2, 3})), Error);
}
