// conv2d, batch norm and pooling: PyTorch reference values and gradients (tests/reference/conv_reference.txt),
// finite-difference gradient checks in f64 (the im2col/loop fallback) and f32 (oneDNN when built with it),
// oneDNN against the fallback on larger shapes, bf16, and errors on bad input.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>

#include "core/ops/conv.h"
#include "core/ops/linalg.h"
#include "gradcheck.h"

using namespace kolo;
using kolo::testing::expect_gradcheck;
using kolo::testing::rand_input;

namespace {

struct RefCase {
  std::map<std::string, std::string> params;
  std::map<std::string, Tensor> tensors;  // f64
  std::array<int64_t, 2> pair(const std::string& k) const {
    std::array<int64_t, 2> v{};
    char comma;
    std::istringstream(params.at(k)) >> v[0] >> comma >> v[1];
    return v;
  }
  double num(const std::string& k) const { return std::stod(params.at(k)); }
  const Tensor& t(const std::string& k) const { return tensors.at(k); }
};

const std::map<std::string, RefCase>& reference() {
  static const std::map<std::string, RefCase> cases = [] {
    std::string path = __FILE__;
    path = path.substr(0, path.rfind("/core/")) + "/reference/conv_reference.txt";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    std::map<std::string, RefCase> out;
    RefCase* cur = nullptr;
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream ls(line);
      std::string kind, name;
      ls >> kind >> name;
      if (kind == "case") {
        cur = &out[name];
        for (std::string kv; ls >> kv;) {
          const auto eq = kv.find('=');
          cur->params[kv.substr(0, eq)] = kv.substr(eq + 1);
        }
      } else if (kind == "tensor") {
        int64_t nd;
        ls >> nd;
        Shape s(nd);
        for (auto& d : s) ls >> d;
        std::getline(in, line);
        std::istringstream vs(line);
        std::vector<double> v(shape_numel(s));
        for (auto& x : v) vs >> x;
        cur->tensors[name] = Tensor::from_vector(v, s);
      }
    }
    return out;
  }();
  return cases;
}

void expect_close(const Tensor& got, const Tensor& want, double atol, double rtol, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const auto g = got.to_vector<double>(), w = want.to_vector<double>();
  for (size_t i = 0; i < w.size(); ++i)
    ASSERT_NEAR(g[i], w[i], atol + rtol * std::abs(w[i])) << what << " element " << i;
}

// Leaf copy of a reference tensor in `dt` that requires grad.
Tensor leaf(const Tensor& t, DType dt) { return t.detach().to(dt).clone().set_requires_grad(true); }

// f64 runs the fallback kernels (oneDNN has no f64), f32 runs oneDNN when built with it.
struct Precision {
  DType dt;
  double atol, rtol;
};
const Precision kPrecisions[] = {{DType::F64, 1e-10, 1e-10}, {DType::F32, 1e-4, 1e-4}};

}  // namespace

TEST(ConvReference, Conv2dMatchesPyTorch) {
  int n_cases = 0;
  for (const auto& [name, rc] : reference()) {
    if (name.rfind("conv", 0) != 0) continue;
    ++n_cases;
    Conv2dOptions opt;
    opt.stride = rc.pair("stride");
    opt.padding = rc.pair("padding");
    opt.dilation = rc.pair("dilation");
    opt.groups = static_cast<int64_t>(rc.num("groups"));
    opt.channels_last = rc.num("channels_last") != 0;
    const bool has_bias = rc.num("bias") != 0;
    for (const Precision& p : kPrecisions) {
      Tensor x = leaf(rc.t("x"), p.dt), w = leaf(rc.t("w"), p.dt);
      Tensor b = has_bias ? leaf(rc.t("b"), p.dt) : Tensor();
      Tensor y = conv2d(x, w, b, opt);
      const std::string what = name + " " + dtype_name(p.dt);
      expect_close(y, rc.t("y"), p.atol, p.rtol, what + " y");
      sum(mul(y, rc.t("r").to(p.dt))).backward();
      expect_close(x.grad(), rc.t("dx"), p.atol, p.rtol, what + " dx");
      expect_close(w.grad(), rc.t("dw"), p.atol, p.rtol, what + " dw");
      if (has_bias) expect_close(b.grad(), rc.t("db"), p.atol, p.rtol, what + " db");
    }
  }
  EXPECT_EQ(n_cases, 4);
}

TEST(ConvReference, BatchNormMatchesPyTorch) {
  int n_cases = 0;
  for (const auto& [name, rc] : reference()) {
    if (name.rfind("bn", 0) != 0) continue;
    ++n_cases;
    const bool training = rc.num("training") != 0, cl = rc.num("channels_last") != 0;
    for (const Precision& p : kPrecisions) {
      Tensor x = leaf(rc.t("x"), p.dt), w = leaf(rc.t("w"), p.dt), b = leaf(rc.t("b"), p.dt);
      Tensor rm = rc.t("rm0").to(p.dt).clone(), rv = rc.t("rv0").to(p.dt).clone();
      Tensor y = batch_norm(x, w, b, rm, rv, training, rc.num("momentum"), rc.num("eps"), cl);
      const std::string what = name + " " + dtype_name(p.dt);
      expect_close(y, rc.t("y"), p.atol, p.rtol, what + " y");
      expect_close(rm, rc.t("rm"), p.atol, p.rtol, what + " running_mean");
      expect_close(rv, rc.t("rv"), p.atol, p.rtol, what + " running_var");
      sum(mul(y, rc.t("r").to(p.dt))).backward();
      expect_close(x.grad(), rc.t("dx"), p.atol, p.rtol, what + " dx");
      expect_close(w.grad(), rc.t("dw"), p.atol, p.rtol, what + " dw");
      expect_close(b.grad(), rc.t("db"), p.atol, p.rtol, what + " db");
    }
  }
  EXPECT_EQ(n_cases, 3);
}

TEST(ConvReference, PoolingMatchesPyTorch) {
  int n_cases = 0;
  for (const auto& [name, rc] : reference()) {
    if (name.find("pool") == std::string::npos) continue;
    ++n_cases;
    Pool2dOptions opt;
    opt.kernel = rc.pair("kernel");
    opt.stride = rc.pair("stride");
    opt.padding = rc.pair("padding");
    opt.channels_last = rc.num("channels_last") != 0;
    const bool is_max = rc.params.at("kind") == "max";
    for (const Precision& p : kPrecisions) {
      Tensor x = leaf(rc.t("x"), p.dt);
      Tensor y = is_max ? max_pool2d(x, opt) : avg_pool2d(x, opt);
      const std::string what = name + " " + dtype_name(p.dt);
      expect_close(y, rc.t("y"), p.atol, p.rtol, what + " y");
      sum(mul(y, rc.t("r").to(p.dt))).backward();
      expect_close(x.grad(), rc.t("dx"), p.atol, p.rtol, what + " dx");
    }
  }
  EXPECT_EQ(n_cases, 2);
}

// ---- finite-difference gradient checks, f64 (fallback kernels)

TEST(ConvGrad, Conv2dOddShapesF64) {
  auto conv = [](Conv2dOptions o) {
    return [o](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], o); };
  };
  Conv2dOptions s2;
  s2.stride = {2, 2};
  s2.padding = {1, 2};
  expect_gradcheck(conv(s2), {rand_input({2, 3, 7, 5}, 1), rand_input({4, 3, 3, 2}, 2), rand_input({4}, 3)});
  Conv2dOptions grp;
  grp.groups = 3;
  grp.stride = {1, 2};
  grp.dilation = {2, 1};
  grp.padding = {2, 0};
  expect_gradcheck(conv(grp), {rand_input({1, 6, 6, 7}, 4), rand_input({9, 2, 2, 3}, 5), rand_input({9}, 6)});
  Conv2dOptions nhwc;
  nhwc.channels_last = true;
  nhwc.stride = {2, 1};
  nhwc.padding = {1, 1};
  nhwc.groups = 2;
  // NHWC x [N, H, W, C], OHWI w [O, kh, kw, C/groups].
  expect_gradcheck(conv(nhwc), {rand_input({2, 5, 4, 4}, 7), rand_input({6, 3, 2, 2}, 8), rand_input({6}, 9)});
}

TEST(ConvGrad, Conv2dNonContiguousInputF64) {
  // x is a transposed view: the op must make it contiguous and route the gradient back through the view.
  expect_gradcheck(
      [](const std::vector<Tensor>& in) { return conv2d(in[0].transpose(2, 3), in[1], Tensor(), Conv2dOptions{}); },
      {rand_input({1, 2, 5, 6}, 10), rand_input({3, 2, 3, 3}, 11)});
}

TEST(ConvGrad, BatchNormF64) {
  for (bool cl : {false, true}) {
    for (bool training : {true, false}) {
      Tensor rm = Tensor::zeros({3}, DType::F64), rv = Tensor::ones({3}, DType::F64);
      Generator g(12);
      if (!training) {
        rm = Tensor::randn({3}, g, DType::F64);
        rv = Tensor::uniform({3}, 0.5, 2.0, g, DType::F64);
      }
      // The running stats change on every training call; the gradient does not depend on them.
      auto f = [&, cl, training](const std::vector<Tensor>& in) {
        return batch_norm(in[0], in[1], in[2], rm, rv, training, 0.1, 1e-5, cl);
      };
      const Shape xs = cl ? Shape{2, 3, 4, 3} : Shape{2, 3, 3, 4};
      expect_gradcheck(f, {rand_input(xs, 13), rand_input({3}, 14), rand_input({3}, 15)}, 1e-6, 1e-6, 1e-5);
    }
  }
  // [N, C] input (BatchNorm1d) without affine parameters.
  Tensor rm = Tensor::zeros({4}, DType::F64), rv = Tensor::ones({4}, DType::F64);
  expect_gradcheck([&](const std::vector<Tensor>& in) { return batch_norm(in[0], Tensor(), Tensor(), rm, rv, true); },
                   {rand_input({5, 4}, 16)});
}

TEST(ConvGrad, PoolingF64) {
  Pool2dOptions o;
  o.kernel = {3, 2};
  o.stride = {2, 1};
  o.padding = {1, 1};
  for (bool cl : {false, true}) {
    o.channels_last = cl;
    expect_gradcheck([o](const std::vector<Tensor>& in) { return max_pool2d(in[0], o); }, {rand_input({2, 5, 6, 3}, 17)});
    expect_gradcheck([o](const std::vector<Tensor>& in) { return avg_pool2d(in[0], o); }, {rand_input({2, 5, 6, 3}, 18)});
    expect_gradcheck([cl](const std::vector<Tensor>& in) { return global_avg_pool2d(in[0], cl); },
                     {rand_input({2, 3, 4, 5}, 19)});
  }
}

// ---- f32 gradient checks (oneDNN when built with it)

TEST(ConvGrad, Conv2dF32) {
  // conv2d is bilinear, so central differences have no truncation error; what remains is f32 rounding of the
  // outputs, ~1e-7 * |y| per element, divided by 2*eps. eps = 1e-2 keeps that below ~1e-3 on these sizes,
  // hence atol/rtol 5e-3.
  Conv2dOptions o;
  o.stride = {2, 1};
  o.padding = {1, 1};
  o.groups = 2;
  for (bool cl : {false, true}) {
    o.channels_last = cl;
    const Shape xs = cl ? Shape{2, 5, 6, 4} : Shape{2, 4, 5, 6};
    const Shape ws = cl ? Shape{6, 3, 3, 2} : Shape{6, 2, 3, 3};
    expect_gradcheck([o](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], o); },
                     {rand_input(xs, 20, DType::F32), rand_input(ws, 21, DType::F32), rand_input({6}, 22, DType::F32)},
                     1e-2, 5e-3, 5e-3);
  }
}

// ---- oneDNN (f32) against the fallback (f64) on shapes where oneDNN picks its blocked kernels

TEST(ConvCross, OneDnnMatchesFallback) {
  struct Cfg {
    Shape x, w;
    Conv2dOptions o;
  };
  Conv2dOptions a;
  a.padding = {1, 1};
  Conv2dOptions b;
  b.stride = {2, 2};
  b.groups = 4;
  b.padding = {1, 0};
  Conv2dOptions c = a;
  c.channels_last = true;
  c.stride = {2, 2};
  for (const Cfg& cfg : {Cfg{{4, 32, 15, 13}, {48, 32, 3, 3}, a}, Cfg{{2, 32, 12, 11}, {64, 8, 3, 1}, b},
                         Cfg{{3, 14, 17, 32}, {32, 3, 3, 32}, c}}) {
    Tensor x64 = rand_input(cfg.x, 30), w64 = rand_input(cfg.w, 31), b64 = rand_input({cfg.w[0]}, 32);
    Tensor x32 = leaf(x64, DType::F32), w32 = leaf(w64, DType::F32), b32 = leaf(b64, DType::F32);
    Tensor y64 = conv2d(x64, w64, b64, cfg.o), y32 = conv2d(x32, w32, b32, cfg.o);
    expect_close(y32, y64.detach(), 1e-3, 1e-4, "y " + shape_str(cfg.x));
    Generator g(33);
    Tensor r = Tensor::randn(y64.shape(), g, DType::F64);
    sum(mul(y64, r)).backward();
    sum(mul(y32, r.to(DType::F32))).backward();
    expect_close(x32.grad(), x64.grad(), 1e-3, 1e-4, "dx " + shape_str(cfg.x));
    expect_close(w32.grad(), w64.grad(), 5e-3, 1e-4, "dw " + shape_str(cfg.x));
    expect_close(b32.grad(), b64.grad(), 5e-3, 1e-4, "db " + shape_str(cfg.x));
  }
}

TEST(ConvCross, Bf16ConvAndPoolCloseToF32) {
  Generator g(40);
  Tensor x = Tensor::randn({2, 16, 9, 9}, g), w = Tensor::randn({8, 16, 3, 3}, g) * 0.2;
  Conv2dOptions o;
  o.padding = {1, 1};
  Tensor y = conv2d(x, w, Tensor(), o);
  // bf16 inputs carry 8 mantissa bits (relative 2^-9 each); a 144-term dot product of N(0, 0.2) terms has
  // an error around 0.01-0.03, so 0.1 + 2% bounds it with margin.
  Tensor yh = conv2d(x.to(DType::BF16), w.to(DType::BF16), Tensor(), o);
  EXPECT_EQ(yh.dtype(), DType::BF16);
  expect_close(yh, y, 0.1, 0.02, "bf16 conv");
  Pool2dOptions p;
  p.kernel = {3, 3};
  p.padding = {1, 1};
  expect_close(max_pool2d(yh, p), max_pool2d(yh.to(DType::F32), p), 0, 0, "bf16 max pool");
  Tensor rm = Tensor::zeros({8}), rv = Tensor::ones({8});
  expect_close(batch_norm(yh, Tensor(), Tensor(), rm, rv, true), batch_norm(y, Tensor(), Tensor(), rm, rv, true),
               0.05, 0.02, "bf16 batch norm");
}

TEST(ConvCross, MatmulF32MatchesF64Gemm) {
  // linalg's f32 gemm runs on oneDNN when built with it; f64 stays on Eigen. Transposed and broadcast operands.
  Generator g(50);
  Tensor a = Tensor::randn({3, 33, 65}, g, DType::F64), b = Tensor::randn({65, 17}, g, DType::F64);
  Tensor bt = Tensor::randn({17, 65}, g, DType::F64).transpose(0, 1);
  for (const Tensor& rhs : {b, bt}) {
    Tensor want = matmul(a, rhs);
    expect_close(matmul(a.to(DType::F32), rhs.to(DType::F32)), want, 1e-4, 1e-4, "f32 matmul");
    expect_close(matmul(a.transpose(1, 2).to(DType::F32).transpose(1, 2), rhs.to(DType::F32)), want, 1e-4, 1e-4,
                 "f32 matmul, transposed lhs");
  }
}

// ---- bad input

template <typename Fn>
void expect_error(Fn&& fn, const std::vector<std::string>& needles) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

TEST(ConvErrors, BadInputNamesOpAndShapes) {
  const Conv2dOptions o;
  expect_error([&] { conv2d(Tensor::zeros({1, 3, 5, 5}), Tensor::zeros({4, 2, 3, 3}), Tensor(), o); },
               {"conv2d", "[1, 3, 5, 5]", "[4, 2, 3, 3]"});
  expect_error([&] { conv2d(Tensor::zeros({1, 3, 2, 5}), Tensor::zeros({4, 3, 3, 3}), Tensor(), o); },
               {"conv2d", "larger than the padded input", "[1, 3, 2, 5]"});
  expect_error([&] { conv2d(Tensor::zeros({3, 5, 5}), Tensor::zeros({4, 3, 3, 3}), Tensor(), o); },
               {"conv2d", "4-D", "[3, 5, 5]"});
  expect_error([&] { conv2d(Tensor::zeros({1, 3, 5, 5}), Tensor::zeros({4, 3, 3, 3}, DType::F64), Tensor(), o); },
               {"conv2d", "dtype"});
  expect_error([&] { conv2d(Tensor::zeros({1, 3, 5, 5}), Tensor::zeros({4, 3, 3, 3}), Tensor::zeros({5}), o); },
               {"conv2d", "bias", "[5]"});
  Conv2dOptions g2;
  g2.groups = 2;
  expect_error([&] { conv2d(Tensor::zeros({1, 3, 5, 5}), Tensor::zeros({4, 3, 3, 3}), Tensor(), g2); },
               {"conv2d", "groups"});
  Tensor rm = Tensor::zeros({3}), rv = Tensor::ones({3});
  expect_error([&] { batch_norm(Tensor::zeros({2, 4, 3, 3}), Tensor(), Tensor(), rm, rv, true); },
               {"batch_norm", "[2, 4, 3, 3]"});
  expect_error([&] { batch_norm(Tensor::zeros({1, 3, 1, 1}), Tensor(), Tensor(), rm, rv, true); },
               {"batch_norm", "more than one value"});
  Pool2dOptions p;
  p.kernel = {2, 2};
  p.padding = {2, 2};
  expect_error([&] { max_pool2d(Tensor::zeros({1, 1, 4, 4}), p); }, {"max_pool2d", "padding"});
  expect_error([&] { avg_pool2d(Tensor::zeros({4, 4}), Pool2dOptions{}); }, {"avg_pool2d", "4-D"});
}

// An evaluation shard of no images (a held-out set smaller than the ranks): eval-mode batch norm of an empty
// batch is an empty output, not a division by zero.
TEST(ConvReference, BatchNormOfAnEmptyBatchInEvalMode) {
  Tensor mean = Tensor::zeros({3}), var = Tensor::ones({3});
  for (bool channels_last : {false, true}) {
    Tensor x = channels_last ? Tensor::zeros({0, 4, 4, 3}) : Tensor::zeros({0, 3, 4, 4});
    Tensor y = batch_norm(x, Tensor::ones({3}), Tensor::zeros({3}), mean, var, /*training=*/false, 0.1, 1e-5,
                          channels_last);
    EXPECT_EQ(y.shape(), x.shape());
  }
  EXPECT_THROW(batch_norm(Tensor::zeros({2, 0, 4}), Tensor(), Tensor(), mean, var, false, 0.1, 1e-5, false), Error);
}
