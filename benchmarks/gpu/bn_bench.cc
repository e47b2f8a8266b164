// Channels-last batch norm kernels at ResNet-50's shapes (batch 256 by default, bf16): each distinct layer's
// forward and backward through the kernel slots ResNet's blocks call (batch_norm_act with ReLU, with the
// residual add, and the downsample blocks' dual form), median of timed repeats, with the bandwidth over the
// fewest bytes each must move. The per-step total weighs each shape by its layer count in ResNet-50.
// Usage: bn_bench [batch]
#include <cstdio>
#include <cstdlib>

#include "benchmarks/gpu/cuda_timing.h"
#include "core/device/cuda/cuda_backend.h"
#include "core/ops/kernels/basic.h"
#include "core/ops/kernels/batch_norm_act.h"

using namespace kolo;
using kolo::bench::median_ms;

namespace {

enum class Kind { Relu, AddRelu, Dual };

struct Layer {
  int64_t hw, c;
  Kind kind;
  int count;  // layers of this shape and kind in ResNet-50
};

// ResNet-50 v1.5 (stride in the 3x3 convolution): the stem, then per stage the first block's 1x1 reduction at
// the input resolution, the 3x3 and 1x1 reductions, the expansion (dual in the downsample block, add otherwise).
constexpr Layer kLayers[] = {
    {12544, 64, Kind::Relu, 1},  {3136, 64, Kind::Relu, 6},    {3136, 256, Kind::Dual, 1},
    {3136, 256, Kind::AddRelu, 2}, {3136, 128, Kind::Relu, 1},  {784, 128, Kind::Relu, 7},
    {784, 512, Kind::Dual, 1},   {784, 512, Kind::AddRelu, 3}, {784, 256, Kind::Relu, 1},
    {196, 256, Kind::Relu, 11},  {196, 1024, Kind::Dual, 1},   {196, 1024, Kind::AddRelu, 5},
    {196, 512, Kind::Relu, 1},   {49, 512, Kind::Relu, 5},     {49, 2048, Kind::Dual, 1},
    {49, 2048, Kind::AddRelu, 2},
};

const char* kind_name(Kind k) { return k == Kind::Relu ? "relu" : k == Kind::AddRelu ? "add+relu" : "dual"; }

// Passes over the activation tensor each direction must make at least: forward reads x (and a normalised r)
// for the statistics, then x (and r) to write y; backward reads dy and x (and the mask's source, y or r) for
// the sums, then dy and x again to write dx (and dr) — with a residual, the partial pass writes the
// residual's gradient dz, which the dx pass reads in place of dy and y.
double fwd_passes(Kind k) { return k == Kind::Relu ? 3 : k == Kind::AddRelu ? 4 : 5; }
double bwd_passes(Kind k) { return k == Kind::Relu ? 5 : k == Kind::AddRelu ? 7 : 8; }

}  // namespace

int main(int argc, char** argv) {
  if (cuda_device_count() == 0) {
    std::printf("no CUDA device visible; nothing to measure\n");
    return 0;
  }
  const int64_t batch = argc > 1 ? std::atoll(argv[1]) : 256;
  const Device g = Device::cuda(0);
  const DType t = DType::BF16;
  Generator gen(1);
  {
    Tensor a = Tensor::uniform({int64_t{1} << 28}, -1, 1, gen, t, g), b = Tensor::empty({int64_t{1} << 28}, t, g);
    const double ms = median_ms([&] { copy_kernel()(g)(b, a); });
    std::printf("device copy bf16 512 MiB: %.3f ms, %.0f GB/s\n", ms, 2.0 * a.nbytes() / ms / 1e6);
  }
  std::printf("%-22s %5s %10s %9s %10s %9s\n", "layer (rows x c, kind)", "count", "fwd ms", "GB/s", "bwd ms", "GB/s");
  double fwd_total = 0, bwd_total = 0;
  for (const Layer& l : kLayers) {
    const int64_t rows = batch * l.hw;
    const Shape shape{batch, l.hw, 1, l.c};
    auto act = [&](double lo, double hi) { return Tensor::uniform(shape, lo, hi, gen, t, g); };
    auto chan = [&](double lo, double hi, DType dt) { return Tensor::uniform({l.c}, lo, hi, gen, dt, g); };
    Tensor x = act(-1, 1), r = act(-1, 1), dy = act(-1, 1), y = Tensor::empty(shape, t, g);
    Tensor dx = Tensor::empty(shape, t, g), dr = Tensor::empty(shape, t, g);
    Tensor w = chan(0.5, 1.5, t), b = chan(-0.5, 0.5, t), rw = chan(0.5, 1.5, t), rb = chan(-0.5, 0.5, t);
    Tensor rm = chan(-0.1, 0.1, DType::F32), rv = chan(0.9, 1.1, DType::F32);
    Tensor rrm = chan(-0.1, 0.1, DType::F32), rrv = chan(0.9, 1.1, DType::F32);
    Tensor sm = Tensor::empty({l.c}, DType::F32, g), si = Tensor::empty({l.c}, DType::F32, g);
    Tensor rsm = Tensor::empty({l.c}, DType::F32, g), rsi = Tensor::empty({l.c}, DType::F32, g);
    Tensor dw = Tensor::empty({l.c}, t, g), db = Tensor::empty({l.c}, t, g);
    Tensor drw = Tensor::empty({l.c}, t, g), drb = Tensor::empty({l.c}, t, g);
    double fwd = 0, bwd = 0;
    if (l.kind == Kind::Dual) {
      fwd = median_ms([&] {
        batch_norm_dual_act_fwd_kernel()(g)(x, w, b, rm, rv, r, rw, rb, rrm, rrv, 0.1, 1e-5, true, y, sm, si, rsm,
                                            rsi);
      });
      bwd = median_ms([&] {
        batch_norm_dual_act_bwd_kernel()(g)(dy, x, w, b, sm, si, r, rw, rb, rsm, rsi, true, dx, dw, db, dr, drw, drb);
      });
    } else {
      const bool res = l.kind == Kind::AddRelu;
      const Tensor residual = res ? r : Tensor();
      fwd = median_ms([&] {
        batch_norm_act_fwd_kernel()(g)(x, w, b, residual, rm, rv, true, 0.1, 1e-5, true, y, sm, si);
      });
      Tensor dres = res ? dr : Tensor();
      bwd = median_ms([&] {
        batch_norm_act_bwd_kernel()(g)(dy, y, x, w, b, sm, si, true, true, res, dx, dw, db, dres);
      });
    }
    const double bytes = 2.0 * rows * l.c;
    char name[64];
    std::snprintf(name, sizeof name, "%lldx%lld %s", static_cast<long long>(rows), static_cast<long long>(l.c),
                  kind_name(l.kind));
    std::printf("%-22s %5d %10.3f %9.0f %10.3f %9.0f\n", name, l.count, fwd, fwd_passes(l.kind) * bytes / fwd / 1e6,
                bwd, bwd_passes(l.kind) * bytes / bwd / 1e6);
    fwd_total += l.count * fwd;
    bwd_total += l.count * bwd;
  }
  std::printf("per ResNet-50 step (batch %lld): forward %.2f ms, backward %.2f ms\n", static_cast<long long>(batch),
              fwd_total, bwd_total);
  return 0;
}
