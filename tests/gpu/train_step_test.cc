// Convolution/batch norm/pooling kernels (cuDNN) and a small training step written with core/ops: a conv
// net (conv+bn+relu, pooling, linear) and a one-block attention model (embedding, layer norm, causal
// attention, label-smoothed cross-entropy) run forward, backward and one SGD update on CPU and GPU; losses,
// every parameter gradient (no conv bias before a training-mode BN: its gradient is exactly zero, so only
// rounding noise would be compared), BN running statistics and the updated loss must agree within the dtype's
// tolerance, in NCHW and NHWC.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>

#include "core/autograd/grad_mode.h"
#include "core/ops/conv.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/nn.h"
#include "core/ops/reduce.h"
#include "tests/gpu/gpu_test_util.h"

namespace kolo {
namespace {

using testing::GpuTest;
using testing::random_cpu;
using testing::relative_error;

struct Params {
  std::map<std::string, Tensor> p;  // trainable
  Tensor rm1, rv1, rm2, rv2;        // BN running statistics
};

Params make_params(DType t, bool nhwc) {
  Params s;
  auto add = [&](const std::string& n, const Shape& shape, double a, uint64_t seed) {
    s.p[n] = random_cpu(shape, t, -a, a, seed);
  };
  add("c1.w", nhwc ? Shape{8, 3, 3, 3} : Shape{8, 3, 3, 3}, 0.4, 1);
  add("bn1.w", {8}, 1.0, 3);
  add("bn1.b", {8}, 0.2, 4);
  add("c2.w", nhwc ? Shape{16, 3, 3, 4} : Shape{16, 4, 3, 3}, 0.3, 5);  // groups = 2
  add("bn2.w", {16}, 1.0, 6);
  add("bn2.b", {16}, 0.2, 7);
  add("fc.w", {10, 16}, 0.3, 8);
  add("fc.b", {10}, 0.1, 9);
  add("emb", {20, 16}, 1.0, 10);
  add("ln.w", {16}, 1.0, 11);
  add("ln.b", {16}, 0.1, 12);
  add("qkv.w", {48, 16}, 0.3, 13);
  add("out.w", {20, 16}, 0.3, 14);
  s.rm1 = Tensor::zeros({8}, DType::F32);
  s.rv1 = Tensor::ones({8}, DType::F32);
  s.rm2 = Tensor::zeros({16}, DType::F32);
  s.rv2 = Tensor::ones({16}, DType::F32);
  return s;
}

Params to_device(const Params& s, Device d) {
  Params o;
  for (auto& [n, t] : s.p) o.p[n] = t.to(d).detach().set_requires_grad(true);
  o.rm1 = s.rm1.to(d);
  o.rv1 = s.rv1.to(d);
  o.rm2 = s.rm2.to(d);
  o.rv2 = s.rv2.to(d);
  return o;
}

Tensor loss_of(Params& s, const Tensor& x, const Tensor& labels, const Tensor& ids, const Tensor& next, bool nhwc) {
  auto& p = s.p;
  Conv2dOptions c1;
  c1.padding = {1, 1};
  c1.channels_last = nhwc;
  Tensor h = relu(batch_norm(conv2d(x, p["c1.w"], Tensor(), c1), p["bn1.w"], p["bn1.b"], s.rm1, s.rv1, true, 0.1,
                             1e-5, nhwc));
  Pool2dOptions mp;
  mp.channels_last = nhwc;
  h = max_pool2d(h, mp);
  Conv2dOptions c2;
  c2.stride = {2, 2};
  c2.padding = {1, 1};
  c2.groups = 2;
  c2.channels_last = nhwc;
  h = relu(batch_norm(conv2d(h, p["c2.w"], Tensor(), c2), p["bn2.w"], p["bn2.b"], s.rm2, s.rv2, true, 0.1, 1e-5,
                      nhwc));
  Pool2dOptions ap;
  ap.kernel = {3, 3};
  ap.stride = {1, 1};
  ap.padding = {1, 1};
  ap.channels_last = nhwc;
  h = avg_pool2d(h, ap);
  Tensor logits = linear(global_avg_pool2d(h, nhwc), p["fc.w"], p["fc.b"]);
  Tensor cnn_loss = cross_entropy(logits, labels, 0.1);

  const int64_t b = ids.size(0), t = ids.size(1), nh = 2, dh = 8;
  Tensor e = layer_norm(embedding(p["emb"], ids), p["ln.w"], p["ln.b"]);
  Tensor qkv = linear(e, p["qkv.w"]).reshape({b, t, 3, nh, dh});
  Tensor q = qkv.select(2, 0).transpose(1, 2), k = qkv.select(2, 1).transpose(1, 2), v = qkv.select(2, 2).transpose(1, 2);
  Tensor a = scaled_dot_product_attention(q, k, v, causal_mask(t, e.dtype(), e.device()));
  Tensor ctx = a.transpose(1, 2).reshape({b * t, nh * dh});
  Tensor tx_loss = cross_entropy(linear(ctx, p["out.w"]), next.reshape({b * t}), 0.1);
  return add(cnn_loss, tx_loss);
}

void sgd(Params& s, double lr) {
  NoGradGuard ng;
  for (auto& [n, t] : s.p) {
    Tensor g = t.grad();
    if (g.is_sparse()) g = g.to_dense();
    add_(t, g, -lr);
  }
}

void run_step(DType t, bool nhwc, double tol, Device gpu) {
  const Params init = make_params(t, nhwc);
  Tensor x = random_cpu(nhwc ? Shape{4, 12, 12, 3} : Shape{4, 3, 12, 12}, t, -1.0, 1.0, 20);
  Tensor labels = Tensor::from_vector(std::vector<int64_t>{1, 7, 3, 9}, {4});
  std::vector<int64_t> idv, nxt;
  for (int i = 0; i < 24; ++i) {
    idv.push_back((i * 7) % 20);
    nxt.push_back((i * 7 + 3) % 20);
  }
  Tensor ids = Tensor::from_vector(idv, {2, 12}), next = Tensor::from_vector(nxt, {2, 12});
  Params cpu = to_device(init, Device::cpu()), dev = to_device(init, gpu);
  Tensor lc = loss_of(cpu, x, labels, ids, next, nhwc);
  Tensor lg = loss_of(dev, x.to(gpu), labels.to(gpu), ids.to(gpu), next.to(gpu), nhwc);
  const std::string what = std::string(dtype_name(t)) + (nhwc ? " nhwc" : " nchw");
  EXPECT_LE(relative_error(lg, lc), tol) << what << " loss";
  lc.backward();
  lg.backward();
  for (auto& [n, p] : cpu.p) {
    Tensor gc = p.grad(), gg = dev.p[n].grad();
    ASSERT_TRUE(gc.defined() && gg.defined()) << what << " " << n;
    if (gc.is_sparse()) gc = gc.to_dense();
    if (gg.is_sparse()) gg = gg.to_dense();
    EXPECT_LE(relative_error(gg, gc), tol) << what << " grad " << n;
  }
  EXPECT_LE(relative_error(dev.rm2, cpu.rm2), tol) << what << " running mean";
  EXPECT_LE(relative_error(dev.rv2, cpu.rv2), tol) << what << " running var";
  sgd(cpu, 0.1);
  sgd(dev, 0.1);
  NoGradGuard ng;
  Tensor l2c = loss_of(cpu, x, labels, ids, next, nhwc);
  Tensor l2g = loss_of(dev, x.to(gpu), labels.to(gpu), ids.to(gpu), next.to(gpu), nhwc);
  EXPECT_LE(relative_error(l2g, l2c), tol) << what << " loss after one SGD step";
}

TEST_F(GpuTest, TrainingStepMatchesCpuF64) { run_step(DType::F64, false, 1e-9, gpu()); }
TEST_F(GpuTest, TrainingStepMatchesCpuF32Nchw) { run_step(DType::F32, false, 1e-4, gpu()); }
TEST_F(GpuTest, TrainingStepMatchesCpuF32Nhwc) { run_step(DType::F32, true, 1e-4, gpu()); }
// bf16 rounds every stored activation and gradient; through two batch norms over a batch of 4 the CPU and
// GPU orders of summation drift to ~0.2 relative on the first layers' gradients (f32/f64 above are exact).
TEST_F(GpuTest, TrainingStepMatchesCpuBf16Nhwc) { run_step(DType::BF16, true, 0.25, gpu()); }

// Direct slot checks with shapes the step above does not reach: 1x1 and strided 7x7 convolutions, dilation,
// eval-mode batch norm (no cuDNN path) and overlapping pools.
TEST_F(GpuTest, ConvBatchNormPoolOpsMatchCpu) {
  for (DType t : {DType::F32, DType::BF16})
    for (bool nhwc : {false, true}) {
      const double tol = t == DType::F32 ? 1e-4 : 3e-2;
      const std::string what = std::string(dtype_name(t)) + (nhwc ? " nhwc" : " nchw");
      Tensor x = random_cpu(nhwc ? Shape{2, 20, 20, 8} : Shape{2, 8, 20, 20}, t, -1.0, 1.0, 70);
      struct C {
        int64_t o, k, s, p, d;
      } cases[] = {{16, 1, 1, 0, 1}, {16, 7, 2, 3, 1}, {8, 3, 1, 2, 2}};
      for (const C& c : cases) {
        Tensor w = random_cpu(nhwc ? Shape{c.o, c.k, c.k, 8} : Shape{c.o, 8, c.k, c.k}, t, -0.3, 0.3, 71);
        Tensor b = random_cpu({c.o}, t, -0.1, 0.1, 72);
        Conv2dOptions o;
        o.stride = {c.s, c.s};
        o.padding = {c.p, c.p};
        o.dilation = {c.d, c.d};
        o.channels_last = nhwc;
        Tensor xc = x.detach().set_requires_grad(true), wc = w.detach().set_requires_grad(true),
               bc = b.detach().set_requires_grad(true);
        Tensor xg = x.to(gpu()).set_requires_grad(true), wg = w.to(gpu()).set_requires_grad(true),
               bg = b.to(gpu()).set_requires_grad(true);
        Tensor yc = conv2d(xc, wc, bc, o), yg = conv2d(xg, wg, bg, o);
        Tensor gy = random_cpu(yc.shape(), t, -1.0, 1.0, 73);
        EXPECT_LE(relative_error(yg, yc), tol) << what << " conv k" << c.k;
        yc.backward(gy);
        yg.backward(gy.to(gpu()));
        EXPECT_LE(relative_error(xg.grad(), xc.grad()), tol) << what << " conv dx k" << c.k;
        EXPECT_LE(relative_error(wg.grad(), wc.grad()), tol) << what << " conv dw k" << c.k;
        EXPECT_LE(relative_error(bg.grad(), bc.grad()), tol) << what << " conv db k" << c.k;
      }
      // Eval-mode batch norm with bf16/f32 running statistics.
      Tensor bw = random_cpu({8}, t, 0.5, 1.5, 74), bb = random_cpu({8}, t, -0.5, 0.5, 75);
      Tensor rm = random_cpu({8}, DType::F32, -0.2, 0.2, 76), rv = random_cpu({8}, DType::F32, 0.5, 2.0, 77);
      Tensor rmg = rm.to(gpu()), rvg = rv.to(gpu());
      Tensor xc = x.detach().set_requires_grad(true), xg = x.to(gpu()).set_requires_grad(true);
      Tensor wc = bw.detach().set_requires_grad(true), wg = bw.to(gpu()).set_requires_grad(true);
      Tensor yc = batch_norm(xc, wc, bb, rm, rv, false, 0.1, 1e-5, nhwc);
      Tensor yg = batch_norm(xg, wg, bb.to(gpu()), rmg, rvg, false, 0.1, 1e-5, nhwc);
      EXPECT_LE(relative_error(yg, yc), tol) << what << " eval bn";
      Tensor gy = random_cpu(yc.shape(), t, -1.0, 1.0, 78);
      yc.backward(gy);
      yg.backward(gy.to(gpu()));
      EXPECT_LE(relative_error(xg.grad(), xc.grad()), tol) << what << " eval bn dx";
      EXPECT_LE(relative_error(wg.grad(), wc.grad()), tol) << what << " eval bn dw";
      // Overlapping max pool and padded average pool.
      for (bool maxp : {true, false}) {
        Pool2dOptions po;
        po.kernel = {3, 3};
        po.stride = {2, 2};
        po.padding = {1, 1};
        po.channels_last = nhwc;
        Tensor pc = x.detach().set_requires_grad(true), pg = x.to(gpu()).set_requires_grad(true);
        Tensor zc = maxp ? max_pool2d(pc, po) : avg_pool2d(pc, po);
        Tensor zg = maxp ? max_pool2d(pg, po) : avg_pool2d(pg, po);
        EXPECT_LE(relative_error(zg, zc), tol) << what << (maxp ? " max" : " avg") << " pool";
        Tensor gz = random_cpu(zc.shape(), t, -1.0, 1.0, 79);
        zc.backward(gz);
        zg.backward(gz.to(gpu()));
        EXPECT_LE(relative_error(pg.grad(), pc.grad()), tol) << what << (maxp ? " max" : " avg") << " pool dx";
      }
    }
}

// Pointwise channels-last convolutions forced onto the cuBLASLt GEMM (KOLO_CONV_GEMM=always, read at each
// shape's first use, so these shapes are used nowhere else): forward, bias, the weight gradient, and the input
// gradient of two convolutions of one input, the second summed into the first's by the GEMM (beta = 1).
TEST_F(GpuTest, PointwiseConvolutionAsGemmMatchesCpu) {
  ::setenv("KOLO_CONV_GEMM", "always", 1);
  for (DType t : {DType::F32, DType::BF16}) {
    const double tol = t == DType::F32 ? 1e-5 : 2e-2;
    const int64_t c = t == DType::F32 ? 24 : 40;
    Tensor x = random_cpu({2, 6, 5, c}, t, -1.0, 1.0, 90);
    Tensor w1 = random_cpu({48, 1, 1, c}, t, -0.3, 0.3, 91), w2 = random_cpu({48, 1, 1, c}, t, -0.3, 0.3, 92);
    Tensor b = random_cpu({48}, t, -0.1, 0.1, 93);
    Conv2dOptions o;
    o.channels_last = true;
    auto run = [&](Device d, Tensor& gx, Tensor& gw1, Tensor& gw2, Tensor& gb) {
      Tensor xd = x.detach().to(d).set_requires_grad(true), w1d = w1.detach().to(d).set_requires_grad(true);
      Tensor w2d = w2.detach().to(d).set_requires_grad(true), bd = b.detach().to(d).set_requires_grad(true);
      Tensor y = add(conv2d(xd, w1d, bd, o), mul(conv2d(xd, w2d, Tensor(), o), conv2d(xd, w2d, Tensor(), o)));
      y.backward(random_cpu(y.shape(), t, -1.0, 1.0, 94).to(d));
      gx = xd.grad().to(Device::cpu());
      gw1 = w1d.grad().to(Device::cpu());
      gw2 = w2d.grad().to(Device::cpu());
      gb = bd.grad().to(Device::cpu());
      return y.detach().to(Device::cpu());
    };
    Tensor cx, cw1, cw2, cb, gx, gw1, gw2, gb;
    Tensor yc = run(Device::cpu(), cx, cw1, cw2, cb);
    Tensor yg = run(gpu(), gx, gw1, gw2, gb);
    const std::string what = dtype_name(t);
    EXPECT_LE(relative_error(yg, yc), tol) << what;
    EXPECT_LE(relative_error(gx, cx), tol) << what << " dx";
    EXPECT_LE(relative_error(gw1, cw1), tol) << what << " dw1";
    EXPECT_LE(relative_error(gw2, cw2), tol) << what << " dw2";
    EXPECT_LE(relative_error(gb, cb), tol) << what << " db";
  }
  ::unsetenv("KOLO_CONV_GEMM");
}

// Channels-last max pooling runs kolo's kernels (argmax bytes kept by the forward, a gather backward): values
// drawn from a few integers make ties, where the first maximum of the window must get the gradient, as on the
// CPU; 8 channels take the vector path, 3 the scalar one; a forward without grad keeps no argmax.
TEST_F(GpuTest, MaxPoolChannelsLastTiesAndWidths) {
  for (DType t : {DType::F32, DType::BF16})
    for (int64_t c : {8, 3})
      for (int k : {2, 3}) {
        Pool2dOptions po;
        po.kernel = {k, k};
        po.stride = {2, 2};
        po.padding = {k / 2 - (k == 2 ? 1 : 0), k / 2 - (k == 2 ? 1 : 0)};
        po.channels_last = true;
        const std::string what = std::string(dtype_name(t)) + " c=" + std::to_string(c) + " k=" + std::to_string(k);
        std::vector<double> vals(static_cast<size_t>(2 * 9 * 7 * c));
        for (size_t i = 0; i < vals.size(); ++i) vals[i] = static_cast<double>((i * 7919 + i / 5) % 4);
        Tensor x = Tensor::from_vector<double>(vals, {2, 9, 7, c}).to(t);
        Tensor xc = x.detach().set_requires_grad(true), xg = x.to(gpu()).set_requires_grad(true);
        Tensor zc = max_pool2d(xc, po), zg = max_pool2d(xg, po);
        EXPECT_EQ(relative_error(zg, zc), 0.0) << what << " y";
        Tensor gz = random_cpu(zc.shape(), t, -1.0, 1.0, 91);
        zc.backward(gz);
        zg.backward(gz.to(gpu()));
        EXPECT_LE(relative_error(xg.grad(), xc.grad()), t == DType::F32 ? 1e-6 : 1e-2) << what << " dx";
        NoGradGuard ng;
        EXPECT_EQ(relative_error(max_pool2d(x.to(gpu()), po), zc.detach()), 0.0) << what << " y without grad";
      }
}

}  // namespace
}  // namespace kolo
