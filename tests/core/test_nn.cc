// Sequence-model ops: values against naive loops and PyTorch reference data (tests/reference), finite-difference
// gradients in f64 on odd shapes, broadcast masks and transposed views, tied embedding/projection gradients,
// reproducible dropout, and bad-input errors.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include "core/ops/elementwise.h"
#include "core/ops/kernel_profiler.h"
#include "core/ops/linalg.h"
#include "core/ops/nn.h"
#include "core/ops/reduce.h"
#include "gradcheck.h"

using namespace kolo;
using kolo::testing::expect_gradcheck;
using kolo::testing::rand_input;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Reads tests/reference/nn_reference.txt (format in gen_nn_reference.py) once.
class Reference {
 public:
  static const Reference& get() {
    static const Reference r;
    return r;
  }
  Tensor tensor(const std::string& name, DType dt = DType::F64) const {
    auto it = data_.find(name);
    if (it == data_.end()) throw std::runtime_error("reference tensor '" + name + "' missing");
    return Tensor::from_vector(it->second.second, it->second.first).to(dt);
  }
  Tensor leaf(const std::string& name, DType dt = DType::F64) const {
    return tensor(name, dt).set_requires_grad(true);
  }

 private:
  Reference() {
    const auto path = std::filesystem::path(__FILE__).parent_path().parent_path() / "reference" / "nn_reference.txt";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path.string());
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#') continue;
      std::istringstream hdr(line);
      std::string kw, name;
      int64_t nd = 0;
      hdr >> kw >> name >> nd;
      Shape s(static_cast<size_t>(nd));
      for (auto& d : s) hdr >> d;
      std::getline(in, line);
      std::istringstream vals(line);
      std::vector<double> v(static_cast<size_t>(shape_numel(s)));
      for (auto& x : v) vals >> x;
      data_[name] = {s, v};
    }
  }
  std::map<std::string, std::pair<Shape, std::vector<double>>> data_;
};

void expect_close(const Tensor& got, const Tensor& want, double atol, double rtol, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const auto g = got.to_dense().to_vector<double>(), w = want.to_vector<double>();
  for (size_t i = 0; i < w.size(); ++i)
    ASSERT_NEAR(g[i], w[i], atol + rtol * std::abs(w[i])) << what << " element " << i;
}

// The unfused composition softmax(q k^T * scale + mask) v, from kolo's own differentiable ops.
Tensor composed_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask) {
  Tensor s = scale(matmul(q, k.transpose(-1, -2)), 1.0 / std::sqrt(static_cast<double>(q.size(-1))));
  if (mask.defined()) s = add(s, mask);
  return matmul(softmax(s, -1), v);
}

}  // namespace

// ---------------------------------------------------------------- softmax

TEST(Softmax, ValuesAreStableAndNormalised) {
  Tensor x = Tensor::from_vector<double>({1000, 1001, 1002, -3, 0, 3}, {2, 3});
  const auto p = softmax(x).to_vector<double>();
  const double e = std::exp(1.0), z = 1 + e + e * e;
  EXPECT_NEAR(p[0], 1 / z, 1e-15);
  EXPECT_NEAR(p[2], e * e / z, 1e-15);
  EXPECT_NEAR(p[3] + p[4] + p[5], 1.0, 1e-15);
  const auto lp = log_softmax(x).to_vector<double>();
  EXPECT_NEAR(lp[0], -std::log(z), 1e-12);
  EXPECT_TRUE(std::isfinite(lp[0]));
  // Along dim 0 of the same tensor: columns normalised.
  const auto p0 = softmax(x, 0).to_vector<double>();
  EXPECT_NEAR(p0[0] + p0[3], 1.0, 1e-15);
  EXPECT_NEAR(p0[0], 1.0, 1e-15);
}

TEST(Softmax, Gradients) {
  for (bool log : {false, true}) {
    SCOPED_TRACE(log ? "log_softmax" : "softmax");
    auto f = [log](const Tensor& x, int64_t d) { return log ? log_softmax(x, d) : softmax(x, d); };
    expect_gradcheck([&](const std::vector<Tensor>& in) { return f(in[0], -1); }, {rand_input({3, 5, 7}, 1)});
    expect_gradcheck([&](const std::vector<Tensor>& in) { return f(in[0], 1); }, {rand_input({3, 5, 2}, 2)});
    // Non-contiguous input: a transposed view.
    expect_gradcheck([&](const std::vector<Tensor>& in) { return f(in[0].transpose(0, 1), -1); },
                     {rand_input({6, 3}, 3)});
  }
}

TEST(Softmax, Float32AndBf16ComputeInFloat) {
  Generator g(4);
  Tensor x = Tensor::randn({33, 129}, g, DType::F64);
  const auto want = softmax(x).to_vector<double>();
  const auto f32 = softmax(x.to(DType::F32)).to_vector<double>();
  const auto b16 = softmax(x.to(DType::BF16)).to_vector<double>();
  const auto lb16 = log_softmax(x.to(DType::BF16)).to_vector<double>();
  const auto lwant = log_softmax(x).to_vector<double>();
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_NEAR(f32[i], want[i], 1e-6);
    // bf16 inputs are rounded to 8 bits of mantissa before the softmax, outputs again after.
    ASSERT_NEAR(b16[i], want[i], 0.02 * want[i] + 1e-4);
    ASSERT_NEAR(lb16[i], lwant[i], 0.03 * std::abs(lwant[i]) + 0.03);
  }
}

TEST(Softmax, BadInput) {
  EXPECT_THROW(softmax(Tensor::zeros({2, 3}), 2), Error);
  EXPECT_THROW(softmax(Tensor::zeros({2, 3}, DType::I64)), Error);
}

// ---------------------------------------------------------------- cross-entropy

TEST(CrossEntropy, MatchesPyTorchWithLabelSmoothingAndIgnoreIndex) {
  const auto& ref = Reference::get();
  for (const char* tag : {"ce1", "ce2", "ce3"}) {
    SCOPED_TRACE(tag);
    const std::string t(tag);
    const auto params = ref.tensor(t + ".params").to_vector<double>();
    for (DType dt : {DType::F64, DType::F32}) {
      const double tol = dt == DType::F64 ? 1e-12 : 2e-6;
      Tensor z = ref.leaf(t + ".logits", dt);
      Tensor y = ref.tensor(t + ".targets", DType::I64);
      Tensor loss = cross_entropy(z, y, params[0], static_cast<int64_t>(params[1]));
      EXPECT_EQ(loss.dim(), 0);
      EXPECT_EQ(loss.dtype(), dt);
      expect_close(loss, ref.tensor(t + ".loss"), tol, tol, "loss");
      scale(loss, 1.7).backward();
      expect_close(z.grad(), ref.tensor(t + ".glogits"), tol, tol, "grad logits");
    }
  }
}

TEST(CrossEntropy, Gradients) {
  Tensor y = Tensor::from_vector<int64_t>({0, 4, -100, 2, 3}, {5});
  expect_gradcheck([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], y, 0.15); },
                   {rand_input({5, 5}, 5)});
  // Non-contiguous logits (a transposed [C, N] tensor) and int32 targets.
  Tensor y32 = Tensor::from_vector<int32_t>({1, 0, 2}, {3});
  expect_gradcheck([&](const std::vector<Tensor>& in) { return cross_entropy(in[0].transpose(0, 1), y32, 0.3); },
                   {rand_input({4, 3}, 6)});
}

TEST(CrossEntropy, Bf16LogitsAccumulateInFloat) {
  Generator g(7);
  Tensor z = Tensor::randn({64, 1000}, g, DType::F32);
  std::vector<int64_t> ids(64);
  for (int64_t i = 0; i < 64; ++i) ids[static_cast<size_t>(i)] = (i * 37) % 1000;
  Tensor y = Tensor::from_vector(ids, {64});
  const double want = cross_entropy(z.to(DType::F64), y, 0.1).item();
  EXPECT_NEAR(cross_entropy(z, y, 0.1).item(), want, 1e-5);
  // Half logits: an f32 loss (no bf16 rounding of the result, no f32 copy of the logits needed), exact up to
  // the logits' own rounding; the gradient keeps the logits' dtype.
  Tensor zb = z.to(DType::BF16).set_requires_grad(true);
  Tensor loss = cross_entropy(zb, y, 0.1);
  EXPECT_EQ(loss.dtype(), DType::F32);
  EXPECT_NEAR(loss.item(), cross_entropy(zb.detach().to(DType::F64), y, 0.1).item(), 1e-5);
  EXPECT_NEAR(loss.item(), want, 0.05);
  loss.backward();
  EXPECT_EQ(zb.grad().dtype(), DType::BF16);
  Tensor zf = zb.detach().to(DType::F32).set_requires_grad(true);
  cross_entropy(zf, y, 0.1).backward();
  expect_close(zb.grad().to(DType::F32), zf.grad(), 1e-4, 1e-2, "bf16 grad logits");
}

TEST(CrossEntropy, AllRowsIgnoredIsNaNLikePyTorch) {
  Tensor z = rand_input({2, 3}, 8);
  Tensor y = Tensor::from_vector<int64_t>({-100, -100}, {2});
  EXPECT_TRUE(std::isnan(cross_entropy(z, y).item()));
}

TEST(CrossEntropy, BadInput) {
  Tensor z = Tensor::zeros({3, 4});
  EXPECT_THROW(cross_entropy(z, Tensor::from_vector<int64_t>({0, 4, 1}, {3})), Error);   // id == C
  EXPECT_THROW(cross_entropy(z, Tensor::from_vector<int64_t>({0, -1, 1}, {3})), Error);  // negative, not ignored
  EXPECT_THROW(cross_entropy(z, Tensor::from_vector<int64_t>({0, 1}, {2})), Error);      // N mismatch
  EXPECT_THROW(cross_entropy(z, Tensor::zeros({3})), Error);                               // float targets
  EXPECT_THROW(cross_entropy(Tensor::zeros({3, 4, 1}), Tensor::zeros({3}, DType::I64)), Error);
  try {
    cross_entropy(z, Tensor::from_vector<int64_t>({0, 9, 1}, {3}));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cross_entropy"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("9"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------- layer norm

TEST(LayerNorm, MatchesPyTorch) {
  const auto& ref = Reference::get();
  for (DType dt : {DType::F64, DType::F32}) {
    const double tol = dt == DType::F64 ? 1e-11 : 3e-5;
    Tensor x = ref.leaf("ln.x", dt), w = ref.leaf("ln.weight", dt), b = ref.leaf("ln.bias", dt);
    Tensor y = layer_norm(x, w, b, 1e-5);
    expect_close(y, ref.tensor("ln.y"), tol, tol, "y");
    sum(mul(y, ref.tensor("ln.r", dt))).backward();
    expect_close(x.grad(), ref.tensor("ln.gx"), tol, tol, "grad x");
    expect_close(w.grad(), ref.tensor("ln.gweight"), tol, tol, "grad weight");
    expect_close(b.grad(), ref.tensor("ln.gbias"), tol, tol, "grad bias");
  }
}

TEST(LayerNorm, Gradients) {
  expect_gradcheck([](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2]); },
                   {rand_input({2, 3, 7}, 9), rand_input({7}, 10), rand_input({7}, 11)});
  expect_gradcheck([](const std::vector<Tensor>& in) { return layer_norm(in[0], Tensor(), Tensor()); },
                   {rand_input({5, 3}, 12)});
  // Transposed input; weight only.
  expect_gradcheck([](const std::vector<Tensor>& in) { return layer_norm(in[0].transpose(0, 1), in[1], Tensor()); },
                   {rand_input({6, 4}, 13), rand_input({6}, 14)});
}

TEST(LayerNorm, ParameterGradientsOverManyRowsUseAllThreads) {
  // Enough rows to take the parallel path: compare against the f64 result.
  Generator g(15);
  Tensor x = Tensor::randn({512, 96}, g), w = Tensor::randn({96}, g), b = Tensor::randn({96}, g);
  Tensor r = Tensor::randn({512, 96}, g);
  std::vector<std::vector<double>> grads[2];
  for (DType dt : {DType::F64, DType::F32}) {
    Tensor xl = x.to(dt).set_requires_grad(true), wl = w.to(dt).set_requires_grad(true),
           bl = b.to(dt).set_requires_grad(true);
    sum(mul(layer_norm(xl, wl, bl), r.to(dt))).backward();
    grads[dt == DType::F32] = {xl.grad().to_vector<double>(), wl.grad().to_vector<double>(),
                               bl.grad().to_vector<double>()};
  }
  for (size_t k = 0; k < 3; ++k)
    for (size_t i = 0; i < grads[0][k].size(); ++i)
      ASSERT_NEAR(grads[1][k][i], grads[0][k][i], 1e-4 * (1 + std::abs(grads[0][k][i]))) << k << " " << i;
}

TEST(LayerNorm, Bf16) {
  Generator g(16);
  Tensor x = Tensor::randn({8, 256}, g);
  const auto want = layer_norm(x, Tensor(), Tensor()).to_vector<double>();
  const auto got = layer_norm(x.to(DType::BF16), Tensor(), Tensor()).to_vector<double>();
  for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 0.02 + 0.01 * std::abs(want[i]));
}

TEST(LayerNorm, BadInput) {
  EXPECT_THROW(layer_norm(Tensor::zeros({2, 4}), Tensor::ones({3}), Tensor()), Error);
  EXPECT_THROW(layer_norm(Tensor::zeros({2, 4}), Tensor::ones({4}, DType::F64), Tensor()), Error);
  EXPECT_THROW(layer_norm(Tensor::zeros({2, 4}), Tensor(), Tensor::ones({4, 1})), Error);
  EXPECT_THROW(layer_norm(Tensor::zeros({2, 4}, DType::I32), Tensor(), Tensor()), Error);
}

// ---------------------------------------------------------------- dropout

TEST(Dropout, ReproducibleFromSeedAndCounters) {
  Tensor x = Tensor::ones({100, 100});
  Generator g1(42), g2(42);
  const auto a = dropout(x, 0.3, true, g1).to_vector<float>();
  const auto b = dropout(x, 0.3, true, g2).to_vector<float>();
  EXPECT_EQ(a, b);
  EXPECT_EQ(g1.offset(), 10000u);  // counters reserved: the next call draws a fresh mask
  const auto c = dropout(x, 0.3, true, g1).to_vector<float>();
  EXPECT_NE(a, c);
  int kept = 0;
  for (float v : a) {
    ASSERT_TRUE(v == 0.0f || std::abs(v - 1.0f / 0.7f) < 1e-6f) << v;
    kept += v != 0.0f;
  }
  EXPECT_NEAR(kept / 10000.0, 0.7, 0.03);  // 7 standard deviations of a binomial(10000, 0.7)
}

TEST(Dropout, IdentityWhenNotTrainingAndZerosAtPOne) {
  Generator g(1);
  Tensor x = rand_input({3, 4}, 17);
  EXPECT_TRUE(dropout(x, 0.5, false, g).same(x));
  EXPECT_TRUE(dropout(x, 0.0, true, g).same(x));
  EXPECT_EQ(dropout(x, 1.0, true, g).to_vector<double>(), std::vector<double>(12, 0.0));
  EXPECT_THROW(dropout(x, 1.5, true, g), Error);
}

TEST(Dropout, GradientUsesTheForwardMask) {
  // A fresh generator per evaluation keeps the mask fixed while gradcheck perturbs the input.
  expect_gradcheck(
      [](const std::vector<Tensor>& in) {
        Generator g(99);
        return dropout(in[0].transpose(0, 1), 0.4, true, g);
      },
      {rand_input({7, 5}, 18)});
  Generator g(3);
  Tensor x = Tensor::full({50}, 2.0, DType::F64).set_requires_grad(true);
  Tensor y = dropout(x, 0.5, true, g);
  sum(y).backward();
  const auto yv = y.to_vector<double>(), gv = x.grad().to_vector<double>();
  for (size_t i = 0; i < yv.size(); ++i) EXPECT_DOUBLE_EQ(gv[i], yv[i] / 2.0);
}

// The fused residual form: the composite's values and mask (f32: both round once per element), the same
// generator counters, gradients for both inputs, and the composite fallback for shapes that broadcast.
TEST(Dropout, DropoutAddEqualsAddOfDropout) {
  Tensor r = rand_input({6, 9}, 21).to(DType::F32), x = rand_input({6, 9}, 22).to(DType::F32);
  Generator g1(7), g2(7);
  const auto fused = dropout_add(r, x, 0.3, true, g1).to_vector<float>();
  const auto composite = add(r, dropout(x, 0.3, true, g2)).to_vector<float>();
  EXPECT_EQ(fused, composite);
  EXPECT_EQ(g1.offset(), g2.offset());
  EXPECT_EQ(dropout_add(r, x, 0.3, false, g1).to_vector<float>(), add(r, x).to_vector<float>());
  Tensor bias = rand_input({9}, 23).to(DType::F32);
  Generator g3(7), g4(7);
  EXPECT_EQ(dropout_add(bias, x, 0.3, true, g3).to_vector<float>(),
            add(bias, dropout(x, 0.3, true, g4)).to_vector<float>());
  EXPECT_THROW(dropout_add(r, x, -0.1, true, g1), Error);
  expect_gradcheck(
      [](const std::vector<Tensor>& in) {
        Generator g(99);
        return dropout_add(in[0], in[1], 0.4, true, g);
      },
      {rand_input({7, 5}, 24), rand_input({7, 5}, 25)});
}

// dropout(relu(x)) in one pass: the composite's values, counters and gradient (taken from the output alone),
// relu in evaluation, and gradcheck.
TEST(Dropout, ReluDropoutEqualsDropoutOfRelu) {
  for (double p : {0.0, 0.3, 1.0}) {
    Tensor x1 = rand_input({6, 9}, 26).to(DType::F32).detach().set_requires_grad(true);
    Tensor x2 = x1.detach().set_requires_grad(true);
    Generator g1(7), g2(7);
    Tensor fused = relu_dropout(x1, p, true, g1), composite = dropout(relu(x2), p, true, g2);
    EXPECT_EQ(fused.to_vector<float>(), composite.to_vector<float>()) << "p=" << p;
    EXPECT_EQ(g1.offset(), g2.offset());
    Tensor w = rand_input({6, 9}, 27).to(DType::F32).detach();
    sum(mul(fused, w)).backward();
    sum(mul(composite, w)).backward();
    EXPECT_EQ(x1.grad().to_vector<float>(), x2.grad().to_vector<float>()) << "p=" << p;
  }
  Tensor x = rand_input({4, 5}, 28).to(DType::F32);
  Generator g(1);
  EXPECT_EQ(relu_dropout(x, 0.3, false, g).to_vector<float>(), relu(x).to_vector<float>());
  EXPECT_EQ(g.offset(), 0u);
  EXPECT_THROW(relu_dropout(x, 1.5, true, g), Error);
  expect_gradcheck(
      [](const std::vector<Tensor>& in) {
        Generator gen(99);
        return relu_dropout(in[0], 0.4, true, gen);
      },
      {rand_input({7, 5}, 29)});
}

// ---------------------------------------------------------------- embedding

TEST(Embedding, GathersRowsWithRowSparseGradient) {
  Tensor w = Tensor::arange(12, DType::F64).reshape({4, 3}).detach().set_requires_grad(true);
  Tensor ids = Tensor::from_vector<int64_t>({3, 0, 3, 1, 2, 3}, {2, 3});
  Tensor e = embedding(w, ids);
  EXPECT_EQ(e.shape(), (Shape{2, 3, 3}));
  const auto v = e.to_vector<double>();
  EXPECT_EQ(std::vector<double>(v.begin(), v.begin() + 6), (std::vector<double>{9, 10, 11, 0, 1, 2}));
  sum(e).backward();
  ASSERT_TRUE(w.grad().is_sparse());
  EXPECT_EQ(w.grad().sparse_indices().to_vector<int64_t>(), (std::vector<int64_t>{3, 0, 3, 1, 2, 3}));
  EXPECT_EQ(w.grad().to_dense().to_vector<double>(), (std::vector<double>{1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3}));
}

TEST(Embedding, GradcheckOnLeafAndNonLeafWeight) {
  Tensor ids = Tensor::from_vector<int32_t>({2, 0, 2, 4}, {4});
  expect_gradcheck([&](const std::vector<Tensor>& in) { return embedding(in[0], ids); }, {rand_input({5, 3}, 19)});
  // A computed (non-leaf) weight gets a dense gradient; a transposed view exercises strided gathers.
  expect_gradcheck([&](const std::vector<Tensor>& in) { return embedding(in[0].transpose(0, 1), ids); },
                   {rand_input({3, 5}, 20)});
}

TEST(Embedding, TiedWithOutputProjection) {
  // Transformer-style sharing: the embedding table is also the output projection (linear with the same weight).
  Tensor ids = Tensor::from_vector<int64_t>({1, 4, 1, 0}, {2, 2});
  expect_gradcheck(
      [&](const std::vector<Tensor>& in) { return linear(layer_norm(embedding(in[0], ids), Tensor(), Tensor()), in[0]); },
      {rand_input({6, 4}, 21)});
  std::vector<double> dense[2];
  for (bool keep_sparse : {false, true}) {
    Tensor w = rand_input({6, 4}, 22);
    w.set_keep_sparse_grad(keep_sparse);
    Tensor logits = linear(embedding(w, ids), w).reshape({4, 6});
    cross_entropy(logits, Tensor::from_vector<int64_t>({2, 3, 5, 0}, {4}), 0.1).backward();
    EXPECT_EQ(w.grad().is_sparse(), keep_sparse);
    // IndexedSlices: the 4 looked-up rows plus the 6 rows of the dense projection gradient.
    if (keep_sparse) {
      EXPECT_EQ(w.grad().sparse_indices().numel(), 4 + 6);
    }
    dense[keep_sparse] = w.grad().to_dense().to_vector<double>();
  }
  for (size_t i = 0; i < dense[0].size(); ++i) EXPECT_NEAR(dense[0][i], dense[1][i], 1e-14);
}

TEST(Embedding, BadInput) {
  Tensor w = Tensor::zeros({4, 3});
  EXPECT_THROW(embedding(w, Tensor::from_vector<int64_t>({0, 4}, {2})), Error);
  EXPECT_THROW(embedding(w, Tensor::from_vector<int64_t>({-1}, {1})), Error);
  EXPECT_THROW(embedding(w, Tensor::zeros({2})), Error);
  EXPECT_THROW(embedding(Tensor::zeros({4}), Tensor::from_vector<int64_t>({0}, {1})), Error);
  try {
    embedding(w, Tensor::from_vector<int64_t>({7}, {1}));
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("embedding"), std::string::npos) << m;
    EXPECT_NE(m.find("[4, 3]"), std::string::npos) << m;
  }
}

// ---------------------------------------------------------------- masks and attention

TEST(Masks, CausalAndPadding) {
  Tensor c = causal_mask(3);
  EXPECT_EQ(c.shape(), (Shape{1, 1, 3, 3}));
  EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{0, -INFINITY, -INFINITY, 0, 0, -INFINITY, 0, 0, 0}));
  Tensor p = padding_mask(Tensor::from_vector<int64_t>({1, 1, 0, 1, 0, 0}, {2, 3}), DType::F64);
  EXPECT_EQ(p.shape(), (Shape{2, 1, 1, 3}));
  EXPECT_EQ(p.to_vector<double>(), (std::vector<double>{0, 0, -kInf, 0, -kInf, -kInf}));
  EXPECT_THROW(padding_mask(Tensor::ones({3})), Error);
  EXPECT_THROW(causal_mask(2, DType::I64), Error);
}

TEST(Attention, MatchesPyTorchWithCausalAndPaddingMasks) {
  const auto& ref = Reference::get();
  for (const char* tag : {"attn_pad", "attn_causal", "attn_both"}) {
    SCOPED_TRACE(tag);
    const std::string t(tag);
    for (DType dt : {DType::F64, DType::F32}) {
      const double tol = dt == DType::F64 ? 1e-12 : 2e-5;
      Tensor q = ref.leaf(t + ".q", dt), k = ref.leaf(t + ".k", dt), v = ref.leaf(t + ".v", dt);
      Tensor mask;
      if (t != "attn_causal") mask = padding_mask(ref.tensor(t + ".key_mask"), dt);
      if (t != "attn_pad") mask = mask.defined() ? add(mask, causal_mask(q.size(2), dt)) : causal_mask(q.size(2), dt);
      Tensor out = scaled_dot_product_attention(q, k, v, mask);
      expect_close(out, ref.tensor(t + ".out"), tol, tol, "out");
      sum(mul(out, ref.tensor(t + ".r", dt))).backward();
      expect_close(q.grad(), ref.tensor(t + ".gq"), tol, tol, "grad q");
      expect_close(k.grad(), ref.tensor(t + ".gk"), tol, tol, "grad k");
      expect_close(v.grad(), ref.tensor(t + ".gv"), tol, tol, "grad v");
    }
  }
}

TEST(Attention, GradientsOnTransposedViewsWithBroadcastMask) {
  // q/k/v as projections laid out [B, T, H, D] and viewed as [B, H, T, D]; odd sizes; Tq != Tk; Dv != Dh.
  Tensor mask = padding_mask(Tensor::from_vector<int64_t>({1, 1, 0, 1, 1, 1, 1, 1, 1, 0}, {2, 5}), DType::F64);
  expect_gradcheck(
      [&](const std::vector<Tensor>& in) {
        return scaled_dot_product_attention(in[0].transpose(1, 2), in[1].transpose(1, 2), in[2].transpose(1, 2),
                                            mask);
      },
      {rand_input({2, 3, 2, 3}, 23), rand_input({2, 5, 2, 3}, 24), rand_input({2, 5, 2, 4}, 25)});
  expect_gradcheck(
      [&](const std::vector<Tensor>& in) {
        return scaled_dot_product_attention(in[0], in[1], in[2], causal_mask(4, DType::F64), 0.7);
      },
      {rand_input({1, 2, 4, 3}, 26), rand_input({1, 2, 4, 3}, 27), rand_input({1, 2, 4, 3}, 28)});
}

TEST(Attention, HeadSplitAndMergeAreViews) {
  // The attention module's pattern: q, k, v split from [B, T, H*D] projections and the output merged back.
  // The output and the input gradients take the projections' [B, T, H, D] layout, so neither pass copies.
  Generator g(45);
  const int64_t b = 2, tq = 5, tk = 7, h = 3, d = 4;
  auto split = [&](const Tensor& x) { return x.reshape({b, x.size(1), h, d}).transpose(1, 2); };
  Tensor xq = Tensor::randn({b, tq, h * d}, g).set_requires_grad(true);
  Tensor xk = Tensor::randn({b, tk, h * d}, g).set_requires_grad(true);
  Tensor xv = Tensor::randn({b, tk, h * d}, g).set_requires_grad(true);
  Tensor r = Tensor::randn({b, tq, h * d}, g);
  Tensor mask = padding_mask(Tensor::from_vector<int64_t>({1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1}, {b, tk}));
  auto run = [&](bool contiguous_heads) {
    auto heads = [&](const Tensor& x) { return contiguous_heads ? split(x).contiguous() : split(x); };
    Tensor y = scaled_dot_product_attention(heads(xq), heads(xk), heads(xv), mask).transpose(1, 2);
    y.reshape({b, tq, h * d}).backward(r);
    return y.detach();
  };
  const Tensor want = run(true);
  std::vector<Tensor> want_grads;
  for (Tensor* x : {&xq, &xk, &xv}) {
    want_grads.push_back(mul(x->grad(), Tensor::scalar(2.0)));
    x->zero_grad();
  }

  // The second pass accumulates into the leaves' existing gradients (the first creates them by copying).
  EXPECT_TRUE(run(false).is_contiguous());
  KernelProfiler::start();
  const Tensor got = run(false);
  for (const KernelStat& k : KernelProfiler::stop()) EXPECT_NE(k.name, "copy") << k.calls << " copies";
  expect_close(got, want, 1e-6, 1e-5, "out");
  expect_close(xq.grad(), want_grads[0], 1e-6, 1e-5, "grad q");
  expect_close(xk.grad(), want_grads[1], 1e-6, 1e-5, "grad k");
  expect_close(xv.grad(), want_grads[2], 1e-6, 1e-5, "grad v");
}

TEST(Attention, GradientOfALearnedAdditiveMask) {
  // A bias that requires grad (relative-position style) broadcast over batch and heads.
  expect_gradcheck([](const std::vector<Tensor>& in) { return scaled_dot_product_attention(in[0], in[1], in[2], in[3]); },
                   {rand_input({2, 2, 3, 4}, 29), rand_input({2, 2, 5, 4}, 30), rand_input({2, 2, 5, 4}, 31),
                    rand_input({1, 1, 3, 5}, 32)});
}

TEST(Attention, FusedEqualsComposedAcrossQueryTiles) {
  // Tq = 70 spans three 32-row query tiles; several heads take the parallel paths.
  Generator g(33);
  Tensor q = Tensor::randn({2, 3, 70, 16}, g).set_requires_grad(true);
  Tensor k = Tensor::randn({2, 3, 70, 16}, g).set_requires_grad(true);
  Tensor v = Tensor::randn({2, 3, 70, 16}, g).set_requires_grad(true);
  Tensor r = Tensor::randn({2, 3, 70, 16}, g);
  Tensor mask = add(causal_mask(70), padding_mask(Tensor::from_vector<int64_t>(std::vector<int64_t>(140, 1), {2, 70})));
  Tensor fused = scaled_dot_product_attention(q, k, v, mask);
  sum(mul(fused, r)).backward();
  std::vector<std::vector<double>> fused_grads{q.grad().to_vector<double>(), k.grad().to_vector<double>(),
                                               v.grad().to_vector<double>()};
  for (Tensor* t : {&q, &k, &v}) t->zero_grad();
  Tensor composed = composed_attention(q, k, v, mask);
  sum(mul(composed, r)).backward();
  expect_close(fused, composed.detach(), 1e-5, 1e-4, "out");
  expect_close(Tensor::from_vector(fused_grads[0], q.shape()), q.grad(), 1e-5, 1e-4, "grad q");
  expect_close(Tensor::from_vector(fused_grads[1], k.shape()), k.grad(), 1e-5, 1e-4, "grad k");
  expect_close(Tensor::from_vector(fused_grads[2], v.shape()), v.grad(), 1e-5, 1e-4, "grad v");
}

TEST(Attention, DropoutMatchesDropoutOpOnProbabilities) {
  // The fused kernel draws its keep decisions from the same counters as dropout() on a contiguous
  // [B, H, Tq, Tk] probability tensor, so the two paths agree exactly in what they drop.
  Generator g(34);
  Tensor q = Tensor::randn({2, 2, 5, 4}, g, DType::F64), k = Tensor::randn({2, 2, 6, 4}, g, DType::F64),
         v = Tensor::randn({2, 2, 6, 4}, g, DType::F64);
  Generator g1(77), g2(77);
  Tensor fused = scaled_dot_product_attention(q, k, v, Tensor(), 0.0, 0.3, true, &g1);
  Tensor p = softmax(scale(matmul(q, k.transpose(-1, -2)), 0.5), -1);
  Tensor composed = matmul(dropout(p, 0.3, true, g2), v);
  expect_close(fused, composed, 1e-13, 1e-12, "out");
  EXPECT_EQ(g1.offset(), g2.offset());
  expect_gradcheck(
      [](const std::vector<Tensor>& in) {
        Generator gen(5);
        return scaled_dot_product_attention(in[0], in[1], in[2], causal_mask(3, DType::F64), 0.0, 0.35, true, &gen);
      },
      {rand_input({1, 2, 3, 2}, 35), rand_input({1, 2, 3, 2}, 36), rand_input({1, 2, 3, 2}, 37)});
}

TEST(Attention, FullyMaskedRowsGiveZerosNotNaN) {
  Tensor q = rand_input({1, 1, 2, 3}, 38), k = rand_input({1, 1, 3, 3}, 39), v = rand_input({1, 1, 3, 3}, 40);
  Tensor mask = Tensor::from_vector<double>({0, -kInf, 0, -kInf, -kInf, -kInf}, {1, 1, 2, 3});
  Tensor out = scaled_dot_product_attention(q, k, v, mask);
  const auto o = out.to_vector<double>();
  for (size_t i = 3; i < 6; ++i) EXPECT_EQ(o[i], 0.0);
  sum(out).backward();
  EXPECT_TRUE(all_finite(q.grad()) && all_finite(k.grad()) && all_finite(v.grad()));
  const auto gk = k.grad().to_vector<double>();
  for (size_t i = 3; i < 6; ++i) EXPECT_EQ(gk[i], 0.0);  // key 1 is masked for every query
  // Every key masked for every query: the whole tile is skipped.
  q.zero_grad();
  Tensor none = Tensor::full({1, 1, 2, 3}, -kInf, DType::F64);
  Tensor out2 = scaled_dot_product_attention(q, k, v, none);
  EXPECT_EQ(out2.to_vector<double>(), std::vector<double>(6, 0.0));
  sum(out2).backward();
  EXPECT_EQ(q.grad().to_vector<double>(), std::vector<double>(6, 0.0));
}

TEST(Attention, Bf16StorageComputesInFloat) {
  Generator g(41);
  Tensor q = Tensor::randn({1, 2, 9, 8}, g), k = Tensor::randn({1, 2, 9, 8}, g), v = Tensor::randn({1, 2, 9, 8}, g);
  const auto want = scaled_dot_product_attention(q, k, v, causal_mask(9)).to_vector<double>();
  const auto got = scaled_dot_product_attention(q.to(DType::BF16), k.to(DType::BF16), v.to(DType::BF16),
                                                causal_mask(9, DType::BF16))
                       .to_vector<double>();
  for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 0.05 + 0.02 * std::abs(want[i]));
}

TEST(Attention, BadInput) {
  Tensor q = Tensor::zeros({1, 2, 3, 4}), kv = Tensor::zeros({1, 2, 5, 4});
  EXPECT_THROW(scaled_dot_product_attention(q, Tensor::zeros({1, 2, 5, 3}), kv, Tensor()), Error);   // Dh
  EXPECT_THROW(scaled_dot_product_attention(q, kv, Tensor::zeros({1, 2, 4, 4}), Tensor()), Error);   // Tk
  EXPECT_THROW(scaled_dot_product_attention(q, kv.to(DType::F64), kv, Tensor()), Error);             // dtype
  EXPECT_THROW(scaled_dot_product_attention(q, kv, kv, causal_mask(3)), Error);                       // mask 3x3
  EXPECT_THROW(scaled_dot_product_attention(q.reshape({2, 3, 4}), kv, kv, Tensor()), Error);         // rank
  EXPECT_THROW(scaled_dot_product_attention(q, kv, kv, Tensor(), 0.0, 0.1, true, nullptr), Error);   // no gen
  try {
    scaled_dot_product_attention(q, kv, kv, causal_mask(3));
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("scaled_dot_product_attention"), std::string::npos) << m;
    EXPECT_NE(m.find("[1, 1, 3, 3]"), std::string::npos) << m;
  }
}
