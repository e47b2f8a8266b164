// Transformer: parameter counts, shapes, tied embedding gradients, incremental decoding, training, gradients.
#include <gtest/gtest.h>

#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/ops/nn.h"
#include "core/ops/reduce.h"
#include "core/ops/shape_ops.h"
#include "models/decoding.h"
#include "models/transformer.h"
#include "tests/models/model_test_util.h"

using namespace kolo;
using namespace kolo::models;

namespace {

TransformerConfig tiny_config(bool pre_norm = false) {
  TransformerConfig c;
  c.vocab_size = 12;  // 0 pad, 1 bos, 2 eos, 3..11 words
  c.d_model = 16;
  c.ffn_dim = 32;
  c.heads = 2;
  c.encoder_layers = 2;
  c.decoder_layers = 2;
  c.dropout = 0.0;
  c.pre_norm = pre_norm;
  c.seed = 5;
  return c;
}

int64_t count_prefix(const Module& m, const std::string& prefix) {
  int64_t n = 0;
  for (auto& [name, t] : m.named_parameters())
    if (name.rfind(prefix, 0) == 0) n += t.numel();
  return n;
}

Tensor ids(const std::vector<int64_t>& v, int64_t b, int64_t t) { return Tensor::from_vector(v, {b, t}); }

}  // namespace

TEST(Transformer, ParameterCountsBaseAndBig) {
  // Per layer, with d the width and f the FFN width (derivation in transformer.h):
  //   encoder 4(d^2+d) + 2df + f + d + 4d; decoder 8(d^2+d) + 2df + f + d + 6d.
  auto enc = [](int64_t d, int64_t f) { return 4 * (d * d + d) + 2 * d * f + f + d + 4 * d; };
  auto dec = [](int64_t d, int64_t f) { return 8 * (d * d + d) + 2 * d * f + f + d + 6 * d; };
  EXPECT_EQ(enc(512, 2048), 3152384);  // torch.nn.TransformerEncoderLayer(512, 8, 2048)
  EXPECT_EQ(dec(512, 2048), 4204032);  // torch.nn.TransformerDecoderLayer(512, 8, 2048)
  const int64_t v = 1000;
  Transformer base(transformer_base(v));
  EXPECT_EQ(count_prefix(base, "encoder.0."), 3152384);
  EXPECT_EQ(count_prefix(base, "decoder.5."), 4204032);
  EXPECT_EQ(base.parameter_count(), 44138496 + 512 * v);  // one shared embedding, tied output
  // Pre-norm adds the final encoder and decoder layer norms (2 * 2d).
  EXPECT_EQ(Transformer(tiny_config(true)).parameter_count(), Transformer(tiny_config(false)).parameter_count() + 4 * 16);
  // Big at a small vocabulary so the test allocates ~0.7 GB rather than 0.85 GB.
  Transformer big(transformer_big(8));
  EXPECT_EQ(count_prefix(big, "encoder.0."), enc(1024, 4096));
  EXPECT_EQ(big.parameter_count(), 176357376 + 1024 * 8);
  EXPECT_EQ(6 * (enc(1024, 4096) + dec(1024, 4096)), 176357376);
  EXPECT_DOUBLE_EQ(transformer_big(8).dropout, 0.3);
  EXPECT_EQ(transformer_big(8).heads, 16);
}

TEST(Transformer, OutputShapeAndPadMasking) {
  Transformer m(tiny_config());
  m.eval();
  Tensor src = ids({3, 4, 5, 2, 6, 7, 2, 0}, 2, 4);
  Tensor tgt = ids({1, 3, 4, 1, 6, 7}, 2, 3);
  Tensor logits = m.forward(src, tgt);
  EXPECT_EQ(logits.shape(), (Shape{2, 3, 12}));
  // Extra source padding changes nothing: padded keys are masked out.
  Tensor src_padded = ids({3, 4, 5, 2, 0, 0, 6, 7, 2, 0, 0, 0}, 2, 6);
  const std::vector<float> a = logits.to_vector<float>(), b = m.forward(src_padded, tgt).to_vector<float>();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5);
  EXPECT_THROW(m.forward(src, ids({1, 3}, 1, 2)), Error);
}

TEST(Transformer, DropoutOnlyInTraining) {
  auto cfg = tiny_config();
  cfg.dropout = 0.3;
  cfg.attention_dropout = 0.1;
  Transformer m(cfg);
  Tensor src = ids({3, 4, 5, 2}, 1, 4);
  Tensor tgt = ids({1, 3, 4}, 1, 3);
  EXPECT_NE(m.forward(src, tgt).to_vector<float>(), m.forward(src, tgt).to_vector<float>());
  m.eval();
  EXPECT_EQ(m.forward(src, tgt).to_vector<float>(), m.forward(src, tgt).to_vector<float>());
}

TEST(Transformer, PositionsAreSinusoids) {
  Tensor pe = sinusoidal_positions(3, 2, 4);
  const std::vector<float> v = pe.to_vector<float>();
  // position 3: [sin 3, cos 3, sin(3/100), cos(3/100)]
  EXPECT_NEAR(v[0], std::sin(3.0), 1e-6);
  EXPECT_NEAR(v[1], std::cos(3.0), 1e-6);
  EXPECT_NEAR(v[2], std::sin(0.03), 1e-6);
  EXPECT_NEAR(v[7], std::cos(0.04), 1e-6);
}

TEST(Transformer, LossIgnoresPadTokens) {
  Transformer m(tiny_config());
  Tensor src = ids({3, 4, 2, 5, 2, 0}, 2, 3);
  Tensor tgt_in = ids({1, 3, 4, 1, 5, 0}, 2, 3);
  Tensor tgt_out = ids({3, 4, 2, 5, 2, 0}, 2, 3);
  Tensor logits = m.forward(src, tgt_in);
  const double with_pad = label_smoothed_loss(logits, tgt_out, 0).item();
  // Mean over the 5 real tokens only: equal to the per-sentence losses weighted by their token counts.
  const double first = label_smoothed_loss(logits.slice(0, 0, 1), tgt_out.slice(0, 0, 1), 0).item();
  const double second = label_smoothed_loss(logits.slice(0, 1, 2).slice(1, 0, 2), tgt_out.slice(0, 1, 2).slice(1, 0, 2), 0).item();
  EXPECT_NEAR(with_pad, (3 * first + 2 * second) / 5, 1e-5);
  EXPECT_EQ(count_non_pad(tgt_out, 0), 5);
  EXPECT_GT(label_smoothed_loss(logits, tgt_out, 0, 0.1).item(), 0.0);
}

TEST(Transformer, TiedEmbeddingGetsSparseLookupAndDenseProjectionGradients) {
  Transformer m(tiny_config());
  Tensor src = ids({3, 4, 2, 5, 2, 0}, 2, 3);
  Tensor tgt_in = ids({1, 3, 4, 1, 5, 6}, 2, 3);
  Tensor tgt_out = ids({3, 4, 2, 5, 6, 2}, 2, 3);
  Tensor w = m.embedding_weight();
  // TensorFlow semantics: both contributions kept as rows — 6 + 6 looked-up rows plus all 12 dense rows.
  w.set_keep_sparse_grad(true);
  label_smoothed_loss(m.forward(src, tgt_in), tgt_out, 0).backward();
  ASSERT_TRUE(w.grad().is_sparse());
  EXPECT_EQ(w.grad().sparse_indices().numel(), 6 + 6 + 12);
  const std::vector<float> as_rows = w.grad().to_dense().to_vector<float>();
  // Default: summed into one dense gradient, equal to the rows' sum.
  w.zero_grad();
  w.set_keep_sparse_grad(false);
  label_smoothed_loss(m.forward(src, tgt_in), tgt_out, 0).backward();
  ASSERT_FALSE(w.grad().is_sparse());
  const std::vector<float> dense = w.grad().to_vector<float>();
  for (size_t i = 0; i < dense.size(); ++i) EXPECT_NEAR(dense[i], as_rows[i], 1e-6);
  // Row 11 is never looked up: its gradient is the projection's alone, and non-zero.
  double row11 = 0;
  for (int j = 0; j < 16; ++j) row11 += std::abs(dense[11 * 16 + j]);
  EXPECT_GT(row11, 0.0);
}

TEST(Transformer, IncrementalDecodingMatchesFullDecoding) {
  for (bool pre_norm : {false, true}) {
    Transformer m(tiny_config(pre_norm));
    m.eval();
    NoGradGuard ng;
    Tensor src = ids({3, 4, 5, 2, 6, 7, 2, 0}, 2, 4);
    Tensor tgt = ids({1, 3, 9, 4, 1, 6, 8, 7}, 2, 4);
    const Tensor mask = m.memory_mask(src);
    const Tensor memory = m.encode(src, mask);
    const std::vector<float> full = m.decode(tgt, memory, mask).to_vector<float>();
    DecoderCache cache = m.new_cache();
    // Two steps of one token, then two tokens at once: both cached paths must agree with the full pass.
    std::vector<Tensor> parts{m.decode(tgt.slice(1, 0, 1), memory, mask, &cache),
                              m.decode(tgt.slice(1, 1, 2), memory, mask, &cache),
                              m.decode(tgt.slice(1, 2, 4), memory, mask, &cache)};
    EXPECT_EQ(cache.step, 4);
    const std::vector<float> inc = cat(parts, 1).to_vector<float>();
    ASSERT_EQ(inc.size(), full.size());
    for (size_t i = 0; i < full.size(); ++i) EXPECT_NEAR(inc[i], full[i], 1e-4) << "pre_norm " << pre_norm;
  }
}

TEST(Transformer, TinyModelLearnsToCopyAndDecodesIt) {
  auto cfg = tiny_config();
  cfg.d_model = 32;
  cfg.ffn_dim = 64;
  cfg.heads = 4;
  Transformer m(cfg);
  // Four source sentences (EOS-terminated); the target is the copy.
  const std::vector<std::vector<int64_t>> sents{{3, 4, 5, 6}, {7, 8, 9, 10}, {11, 5, 3, 8}, {6, 6, 9, 4}};
  std::vector<int64_t> src, tin, tout;
  for (auto& s : sents) {
    for (int64_t t : s) src.push_back(t);
    src.push_back(2);
    tin.push_back(1);
    for (int64_t t : s) tin.push_back(t), tout.push_back(t);
    tout.push_back(2);
  }
  Tensor s = ids(src, 4, 5), ti = ids(tin, 4, 5), to = ids(tout, 4, 5);
  kolo::testing::TestAdam adam(m.parameters(), 0.005);
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    Tensor loss = label_smoothed_loss(m.forward(s, ti), to, 0, 0.0);
    if (step == 0) first = loss.item();
    last = loss.item();
    loss.backward();
    adam.step();
  }
  EXPECT_LT(last, 0.05 * first) << "first " << first << " last " << last;
  DecodeOptions opt;
  opt.max_len = 8;
  for (int64_t beam : {1, 3}) {
    opt.beam_size = beam;
    const auto hyps = translate(m, s, opt);
    for (size_t i = 0; i < sents.size(); ++i) EXPECT_EQ(hyps[i].tokens, sents[i]) << "beam " << beam << " row " << i;
  }
  EXPECT_TRUE(m.is_training());  // translate restores the mode
}

TEST(Transformer, GradientCheckF64) {
  auto cfg = tiny_config(true);
  cfg.vocab_size = 7;
  cfg.d_model = 4;
  cfg.ffn_dim = 6;
  cfg.encoder_layers = 1;
  cfg.decoder_layers = 1;
  Transformer m(cfg);
  m.to(DType::F64);
  Tensor src = ids({3, 4, 2, 5, 2, 0}, 2, 3);
  Tensor tgt_in = ids({1, 3, 4, 1, 5, 6}, 2, 3);
  Tensor tgt_out = ids({3, 4, 2, 5, 6, 2}, 2, 3);
  kolo::testing::expect_model_gradcheck(
      m, [&] { return label_smoothed_loss(m.forward(src, tgt_in), tgt_out, 0, 0.1); }, 5, 1e-6, 1e-5);
}
