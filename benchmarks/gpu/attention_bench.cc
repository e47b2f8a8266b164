// Attention at Transformer-big shapes (batch 256 x 64 tokens, 16 heads of 64, bf16) on the CUDA slots: forward
// and forward + backward for the three attentions of the model (encoder self with key padding, decoder self
// causal + padding, cross with padding), q/k/v as head views of [B, T, H*Dh] projections as the model makes
// them. Each row is timed on each implementation (tile kernels, GEMM path, CUDA-core fused kernels; forced
// through cuda::set_attention_path) on the same inputs.
// TFLOP/s counts the GEMM work done: 2 products forward, 5 backward (scores recomputed), 2*Tq*Tk*Dh each.
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "benchmarks/gpu/cuda_timing.h"
#include "core/device/cuda/cuda_backend.h"
#include "core/ops/cuda/attention_launch.h"
#include "core/ops/kernels/nn.h"

using namespace kolo;
using kolo::bench::median_ms;

namespace {

struct Problem {
  const char* name;
  int64_t tq, tk;
  bool causal;
};

}  // namespace

int main() {
  if (cuda_device_count() == 0) {
    std::printf("no CUDA device visible; nothing to measure\n");
    return 0;
  }
  const Device g = Device::cuda(0);
  const DType t = DType::BF16;
  const int64_t nb = 256, nh = 16, dh = 64, d = nh * dh;
  const double scale = 1.0 / std::sqrt(static_cast<double>(dh)), dropout = 0.1;
  Generator gen(1);
  const Problem problems[] = {{"encoder self (padding)", 64, 64, false},
                              {"decoder self (causal+padding)", 64, 64, true},
                              {"cross (padding)", 64, 64, false}};
  std::printf("B=%lld H=%lld Dh=%lld bf16, attention dropout %.1f\n", static_cast<long long>(nb),
              static_cast<long long>(nh), static_cast<long long>(dh), dropout);
  std::printf("%-32s %-6s %-8s %10s %10s\n", "attention", "path", "pass", "median", "GEMM work");
  const cuda::AttentionPath paths[] = {cuda::AttentionPath::Tile, cuda::AttentionPath::Gemm,
                                       cuda::AttentionPath::Fused};
  const char* path_names[] = {"tile", "gemm", "fused"};
  double per_step[3][2] = {};  // [path][fwd, fwd+bwd], summed over the model's 18 attentions
  for (const Problem& p : problems) {
    auto heads = [&](int64_t tt) {
      return Tensor::uniform({nb, tt, d}, -1, 1, gen, t, g).view({nb, tt, nh, dh}).transpose(1, 2);
    };
    Tensor q = heads(p.tq), k = heads(p.tk), v = heads(p.tk), go = heads(p.tq);
    // Key padding: batch row b keeps its first tk - (b % 8) keys; causal on top for the decoder.
    const double inf = std::numeric_limits<double>::infinity();
    std::vector<double> m(static_cast<size_t>(nb * p.tq * p.tk), 0.0);
    for (int64_t b = 0; b < nb; ++b)
      for (int64_t i = 0; i < p.tq; ++i)
        for (int64_t j = 0; j < p.tk; ++j)
          if (j >= p.tk - b % 8 || (p.causal && j > i)) m[static_cast<size_t>((b * p.tq + i) * p.tk + j)] = -inf;
    Tensor mask = Tensor::from_vector(m, {nb, 1, p.tq, p.tk}).to(t).to(g).expand({nb, nh, p.tq, p.tk});
    // Outputs head-interleaved, as the op allocates them for head views.
    auto out_heads = [&](int64_t tt) { return Tensor::empty({nb, tt, nh, dh}, t, g).transpose(1, 2); };
    Tensor out = out_heads(p.tq), lse = Tensor::empty({nb, nh, p.tq}, DType::F32, g);
    Tensor gq = out_heads(p.tq), gk = out_heads(p.tk), gv = out_heads(p.tk), gs;
    const double gemm_flop = 2.0 * nb * nh * p.tq * p.tk * dh;
    for (int path = 0; path < 3; ++path) {
      cuda::set_attention_path(paths[path]);
      auto fwd = [&] { attention_fwd_kernel()(g)(q, k, v, mask, scale, dropout, 7, 0, out, lse); };
      auto bwd = [&] { attention_bwd_kernel()(g)(go, q, k, v, mask, out, lse, scale, dropout, 7, 0, gq, gk, gv, gs); };
      const double f = median_ms(fwd);
      const double fb = median_ms([&] {
        fwd();
        bwd();
      });
      std::printf("%-32s %-6s %-8s %7.3f ms %6.1f TFLOP/s\n", p.name, path_names[path], "fwd", f,
                  2 * gemm_flop / f / 1e9);
      std::printf("%-32s %-6s %-8s %7.3f ms %6.1f TFLOP/s\n", p.name, path_names[path], "fwd+bwd", fb,
                  7 * gemm_flop / fb / 1e9);
      per_step[path][0] += 6 * f;
      per_step[path][1] += 6 * fb;
    }
  }
  cuda::set_attention_path(cuda::AttentionPath::Auto);
  for (int path = 0; path < 3; ++path)
    std::printf("Transformer-big step (6 layers x 3 attentions), %s: fwd %.2f ms, fwd+bwd %.2f ms\n", path_names[path],
                per_step[path][0], per_step[path][1]);
  const MemoryStats st = cuda_device_allocator(0).stats();
  std::printf("allocator: peak %.2f GiB\n", st.peak / 1073741824.0);
  return 0;
}
