// CPU conv2d, matmul and attention throughput of kolo, case by case from shapes.txt; torch_conv_matmul.py
// times the same cases with PyTorch, and run.sh runs both with the same thread count. One line per case and
// mode: op, case, dtype, layout, mode (fwd or fwd+bwd), milliseconds per iteration (median of repeats),
// GFLOP/s (attention counts the full QK^T and PV products, 4*B*H*Tq*Tk*D forward, though a causal mask lets
// an implementation skip half).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/ops/conv.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/nn.h"

using namespace kolo;

namespace {

// Median milliseconds of `fn` over repeats of a batch sized to last ~0.1 s, after a warm-up call.
template <typename Fn>
double time_ms(Fn&& fn) {
  using clock = std::chrono::steady_clock;
  fn();
  auto t0 = clock::now();
  fn();
  const double one = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
  const int iters = std::max(1, static_cast<int>(100.0 / std::max(one, 1e-3)));
  std::vector<double> samples;
  for (int r = 0; r < 5; ++r) {
    t0 = clock::now();
    for (int i = 0; i < iters; ++i) fn();
    samples.push_back(std::chrono::duration<double, std::milli>(clock::now() - t0).count() / iters);
  }
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

void report(const char* op, const std::string& name, const char* dt, const char* layout, const char* mode, double ms,
            double flops) {
  std::printf("%-7s %-14s %-5s %-5s %-8s %10.3f %10.1f\n", op, name.c_str(), dt, layout, mode, ms, flops / ms / 1e6);
  std::fflush(stdout);
}

void bench_conv(const std::string& name, std::istringstream& ls) {
  int64_t n, c, h, w, o, kh, kw, s, p, g;
  ls >> n >> c >> h >> w >> o >> kh >> kw >> s >> p >> g;
  Conv2dOptions opt;
  opt.stride = {s, s};
  opt.padding = {p, p};
  opt.groups = g;
  const int64_t oh = (h + 2 * p - kh) / s + 1, ow = (w + 2 * p - kw) / s + 1;
  const double fwd_flops = 2.0 * n * o * oh * ow * (c / g) * kh * kw;
  for (bool cl : {false, true}) {
    opt.channels_last = cl;
    Generator gen(1);
    Tensor x = Tensor::randn(cl ? Shape{n, h, w, c} : Shape{n, c, h, w}, gen);
    Tensor wt = Tensor::randn(cl ? Shape{o, kh, kw, c / g} : Shape{o, c / g, kh, kw}, gen) * 0.05;
    Tensor b = Tensor::zeros({o});
    const char* layout = cl ? "nhwc" : "nchw";
    {
      NoGradGuard ng;
      report("conv2d", name, "f32", layout, "fwd", time_ms([&] { conv2d(x, wt, b, opt); }), fwd_flops);
    }
    Tensor xg = x.detach().set_requires_grad(true), wg = wt.detach().set_requires_grad(true);
    Tensor bg = b.detach().set_requires_grad(true);
    Tensor dy = Tensor::randn(conv2d(x, wt, b, opt).shape(), gen);
    report("conv2d", name, "f32", layout, "fwd+bwd", time_ms([&] {
             xg.zero_grad();
             wg.zero_grad();
             bg.zero_grad();
             conv2d(xg, wg, bg, opt).backward(dy);
           }),
           3 * fwd_flops);
  }
}

void bench_matmul(const std::string& name, std::istringstream& ls) {
  int64_t b, m, k, n;
  ls >> b >> m >> k >> n;
  for (DType dt : {DType::F32, DType::BF16}) {
    Generator gen(2);
    Tensor x = Tensor::randn({b, m, k}, gen, dt), y = Tensor::randn({b, k, n}, gen, dt);
    NoGradGuard ng;
    report("matmul", name, dtype_name(dt), "-", "fwd", time_ms([&] { matmul(x, y); }), 2.0 * b * m * k * n);
  }
}

// The padding case masks the last 4*(b % 4) keys of sequence b (lengths T, T-4, T-8, T-12), as a batch of
// sentences of different lengths.
Tensor attention_mask(const std::string& kind, int64_t b, int64_t tq, int64_t tk) {
  if (kind == "causal") return causal_mask(tq);
  std::vector<float> keep(static_cast<size_t>(b * tk));
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < tk; ++j) keep[i * tk + j] = j < tk - 4 * (i % 4) ? 1.0f : 0.0f;
  return padding_mask(Tensor::from_vector(keep, {b, tk}));
}

void bench_attention(const std::string& name, std::istringstream& ls) {
  int64_t b, h, tq, tk, d;
  std::string kind;
  ls >> b >> h >> tq >> tk >> d >> kind;
  const double fwd_flops = 4.0 * b * h * tq * tk * d;
  Generator gen(3);
  Tensor q = Tensor::randn({b, h, tq, d}, gen), k = Tensor::randn({b, h, tk, d}, gen);
  Tensor v = Tensor::randn({b, h, tk, d}, gen);
  const Tensor mask = attention_mask(kind, b, tq, tk);
  {
    NoGradGuard ng;
    report("attn", name, "f32", kind == "causal" ? "caus" : "pad", "fwd",
           time_ms([&] { scaled_dot_product_attention(q, k, v, mask); }), fwd_flops);
  }
  Tensor qg = q.detach().set_requires_grad(true), kg = k.detach().set_requires_grad(true);
  Tensor vg = v.detach().set_requires_grad(true);
  Tensor dy = Tensor::randn({b, h, tq, d}, gen);
  report("attn", name, "f32", kind == "causal" ? "caus" : "pad", "fwd+bwd", time_ms([&] {
           qg.zero_grad();
           kg.zero_grad();
           vg.zero_grad();
           scaled_dot_product_attention(qg, kg, vg, mask).backward(dy);
         }),
         3 * fwd_flops);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : "benchmarks/cpu/shapes.txt";
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "cannot open %s\n", path.c_str());
    return 1;
  }
  std::printf("%-7s %-14s %-5s %-5s %-8s %10s %10s\n", "op", "case", "dtype", "lay", "mode", "ms", "GFLOP/s");
  for (std::string line; std::getline(in, line);) {
    std::istringstream ls(line);
    std::string op, name;
    if (!(ls >> op >> name) || op[0] == '#') continue;
    if (op == "conv") bench_conv(name, ls);
    else if (op == "matmul") bench_matmul(name, ls);
    else if (op == "attn") bench_attention(name, ls);
  }
  return 0;
}
