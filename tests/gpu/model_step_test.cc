// The library's models take one training step on the CPU and on the GPU from the same initial weights:
// models::ResNet (bottleneck blocks, channels-last, so the GPU runs the fused BN+ReLU, BN+add+ReLU and dual
// downsample kernels) and models::Transformer (encoder-decoder: attention, the fused feed-forward, layer norm,
// tied embeddings, label-smoothed loss with padding). Loss, every parameter gradient, the BN running statistics
// and the loss after an SGD update must agree within the dtype's tolerance.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "core/ops/nn.h"
#include "models/resnet.h"
#include "models/transformer.h"
#include "tests/gpu/gpu_test_util.h"

namespace kolo {
namespace {

using testing::GpuTest;
using testing::random_cpu;
using testing::relative_error;
using namespace models;

// `loss(model, device)` on `cpu` (already on the CPU) and on `dev` (built identically, moved to `gpu`),
// backward, comparison of every gradient and buffer, one SGD update each, then the losses again.
template <typename M>
void compare_step(M& cpu, M& dev, Device gpu, const std::function<Tensor(M&, Device)>& loss, double tol,
                  const std::string& what) {
  dev.to(gpu);
  Tensor lc = loss(cpu, Device::cpu());
  Tensor lg = loss(dev, gpu);
  EXPECT_LE(relative_error(lg, lc), tol) << what << " loss";
  lc.backward();
  lg.backward();
  const auto pc = cpu.named_parameters(), pg = dev.named_parameters();
  ASSERT_EQ(pc.size(), pg.size());
  auto dense_grad = [](const Tensor& p) {
    Tensor g = p.grad();
    return g.defined() && g.is_sparse() ? g.to_dense() : g;
  };
  auto squared_norm = [](const Tensor& t) {
    double s = 0;
    for (double x : t.to(Device::cpu()).template to_vector<double>()) s += x * x;
    return s;
  };
  double total = 0;
  for (const auto& [n, p] : pc)
    if (p.grad().defined()) total += squared_norm(dense_grad(p));
  const double global = std::sqrt(total);  // the CPU gradients' global norm
  for (size_t i = 0; i < pc.size(); ++i) {
    Tensor gc = dense_grad(pc[i].second), gg = dense_grad(pg[i].second);
    ASSERT_TRUE(gc.defined() && gg.defined()) << what << " " << pc[i].first;
    ASSERT_EQ(gg.shape(), gc.shape()) << what << " " << pc[i].first;
    // Relative to the gradient's own norm, or to 1e-4 of the global norm when it is smaller: an attention key
    // bias has an exactly zero gradient (softmax ignores an offset shared by all keys), so both devices hold
    // only rounding noise there and its relative error means nothing.
    EXPECT_LE(relative_error(gg, gc, 1e-4 * global), tol)
        << what << " grad " << pc[i].first << " (norm " << std::sqrt(squared_norm(gc)) << ", global " << global << ")";
  }
  const auto bc = cpu.named_buffers(), bg = dev.named_buffers();
  ASSERT_EQ(bc.size(), bg.size());
  for (size_t i = 0; i < bc.size(); ++i)
    EXPECT_LE(relative_error(bg[i].second, bc[i].second), tol) << what << " buffer " << bc[i].first;
  {
    NoGradGuard ng;
    for (auto* m : {&cpu, &dev})
      for (auto& [n, p] : m->named_parameters()) add_(p, dense_grad(p), -0.1);
    EXPECT_LE(relative_error(loss(dev, gpu), loss(cpu, Device::cpu())), tol) << what << " loss after one SGD step";
  }
}

ResNetConfig small_resnet() {
  ResNetConfig c;
  c.blocks = {1, 1, 1, 1};
  c.bottleneck = true;
  c.width = 8;
  c.num_classes = 10;
  c.small_stem = true;
  c.image_size = 16;
  c.channels_last = true;
  c.seed = 3;
  return c;
}

TransformerConfig small_transformer() {
  TransformerConfig c;
  c.vocab_size = 24;  // 0 pad
  c.d_model = 32;
  c.ffn_dim = 64;
  c.heads = 4;
  c.encoder_layers = 2;
  c.decoder_layers = 2;
  c.dropout = 0.0;
  c.seed = 7;
  return c;
}

Tensor token_ids(int64_t b, int64_t t, int64_t vocab, int64_t salt, int64_t pad_tail) {
  std::vector<int64_t> v;
  for (int64_t i = 0; i < b * t; ++i)
    v.push_back(i % t >= t - pad_tail && i / t == 0 ? 0 : 1 + (i * 7 + salt * 5) % (vocab - 1));
  return Tensor::from_vector(v, {b, t});
}

// In f32 the devices differ only in summation order (~1e-5 relative through these depths); a wrong kernel is
// off by O(1), so 1e-3 leaves room for batch statistics over as few as 16 rows (the last stage: 4 images of 2x2).
TEST_F(GpuTest, ResNetTrainingStepMatchesCpu) {
  ResNet cpu(small_resnet()), dev(small_resnet());
  const Tensor x = random_cpu({4, 16, 16, 3}, DType::F32, -1.0, 1.0, 11);
  const Tensor y = Tensor::from_vector<int64_t>({1, 7, 3, 9}, {4});
  compare_step<ResNet>(
      cpu, dev, gpu(), [&](ResNet& m, Device d) { return cross_entropy(m.forward(x.to(d)), y.to(d), 0.1); }, 1e-3,
      "resnet f32");
}

TEST_F(GpuTest, TransformerTrainingStepMatchesCpu) {
  Transformer cpu(small_transformer()), dev(small_transformer());
  const int64_t v = small_transformer().vocab_size;
  // Row 0 of each batch ends in padding: the masks and the loss's pad handling are part of the step.
  const Tensor src = token_ids(3, 9, v, 1, 3), tgt_in = token_ids(3, 7, v, 2, 2), tgt_out = token_ids(3, 7, v, 3, 2);
  compare_step<Transformer>(
      cpu, dev, gpu(),
      [&](Transformer& m, Device d) {
        return label_smoothed_loss(m.forward(src.to(d), tgt_in.to(d)), tgt_out.to(d), 0, 0.1);
      },
      1e-3, "transformer f32");
}

}  // namespace
}  // namespace kolo
