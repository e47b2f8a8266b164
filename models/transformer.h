// Encoder-decoder Transformer (Vaswani et al. 2017), base and big, with sinusoidal positions, post- or
// pre-norm layers and one embedding table shared by source, target and the output projection.
//
// Parameter count (shared vocabulary V, model width d, feed-forward width f, biases on every projection,
// no bias on the tied output projection, no learned positions):
//   encoder layer: 4(d^2 + d) attention + (df + f + fd + d) feed-forward + 2 * 2d layer norms
//   decoder layer: 8(d^2 + d) two attentions + (2df + f + d) feed-forward + 3 * 2d layer norms
//   total: V d + 6 enc + 6 dec (+ 2 * 2d for the final layer norms of a pre-norm model).
// Base (d 512, f 2048): 3,152,384 per encoder layer and 4,204,032 per decoder layer (the same as
// torch.nn.TransformerEncoderLayer/DecoderLayer(512, 8, 2048)), 44,138,496 + 512 V in all; with V = 37,000
// that is 63.1M, the paper's "65M". Big (d 1024, f 4096): 12,596,224 and 16,796,672, 176,357,376 + 1024 V,
// 214.2M at V = 37,000 (the paper's "213M").
#pragma once

#include <memory>
#include <vector>

#include "models/layers/attention.h"
#include "models/layers/basic.h"
#include "models/module.h"

namespace kolo::models {

struct TransformerConfig {
  int64_t vocab_size = 32000;
  int64_t d_model = 512;
  int64_t ffn_dim = 2048;
  int64_t heads = 8;
  int64_t encoder_layers = 6;
  int64_t decoder_layers = 6;
  double dropout = 0.1;            // on embeddings and every residual branch
  double attention_dropout = 0.0;  // on attention weights
  double activation_dropout = 0.0; // inside the feed-forward block
  bool pre_norm = false;           // false: the paper's post-norm; true: LN before each sublayer + final LN
  int64_t pad_id = 0, bos_id = 1, eos_id = 2;
  uint64_t seed = 0;
};

TransformerConfig transformer_base(int64_t vocab_size);  // d 512, ffn 2048, 8 heads, dropout 0.1
TransformerConfig transformer_big(int64_t vocab_size);   // d 1024, ffn 4096, 16 heads, dropout 0.3

// Per-layer attention caches for incremental decoding; `step` is the number of target positions fed so far.
struct DecoderCache {
  std::vector<AttentionCache> self_attn, encoder_attn;
  int64_t step = 0;
  void reorder(const Tensor& index);
};

class EncoderLayer : public Module {
 public:
  EncoderLayer(const TransformerConfig& c, Generator& gen);
  Tensor forward(const Tensor& x, const Tensor& mask);

 private:
  bool pre_norm_;
  std::shared_ptr<MultiheadAttention> self_attn_;
  std::shared_ptr<LayerNorm> self_attn_norm_, ffn_norm_;
  std::shared_ptr<FeedForward> ffn_;
  std::shared_ptr<Dropout> dropout_;
};

class DecoderLayer : public Module {
 public:
  DecoderLayer(const TransformerConfig& c, Generator& gen);
  Tensor forward(const Tensor& x, const Tensor& memory, const Tensor& self_mask, const Tensor& memory_mask,
                 AttentionCache* self_cache, AttentionCache* encoder_cache);

 private:
  bool pre_norm_;
  std::shared_ptr<MultiheadAttention> self_attn_, encoder_attn_;
  std::shared_ptr<LayerNorm> self_attn_norm_, encoder_attn_norm_, ffn_norm_;
  std::shared_ptr<FeedForward> ffn_;
  std::shared_ptr<Dropout> dropout_;
};

class Transformer : public Module {
 public:
  explicit Transformer(const TransformerConfig& config);

  // src [B, S], tgt_in [B, T] (i64 token ids, BOS-prefixed target) -> logits [B, T, V].
  Tensor forward(const Tensor& src, const Tensor& tgt_in);
  // Encoder output [B, S, d] and the additive key-padding mask [B, 1, 1, S] built from src's pad tokens.
  Tensor encode(const Tensor& src, const Tensor& memory_mask);
  Tensor memory_mask(const Tensor& src) const;
  // Logits for target positions. Without a cache tgt_in is the whole prefix (causal mask applied); with a
  // cache it holds only the new positions, which start at cache->step.
  Tensor decode(const Tensor& tgt_in, const Tensor& memory, const Tensor& memory_mask, DecoderCache* cache = nullptr);
  DecoderCache new_cache() const;

  const TransformerConfig& config() const { return config_; }
  const Tensor& embedding_weight() const { return embed_->weight(); }

 private:
  Tensor embed(const Tensor& ids, int64_t first_position);

  TransformerConfig config_;
  std::shared_ptr<Embedding> embed_;
  std::shared_ptr<Dropout> embed_dropout_;
  std::vector<std::shared_ptr<EncoderLayer>> encoder_;
  std::vector<std::shared_ptr<DecoderLayer>> decoder_;
  std::shared_ptr<LayerNorm> encoder_norm_, decoder_norm_;  // pre-norm only
};

// Sinusoidal position encodings [T, d] for positions first .. first+T-1 (sin on even, cos on odd features).
Tensor sinusoidal_positions(int64_t first, int64_t length, int64_t dim, DType dtype = DType::F32,
                            Device device = Device::cpu());

// Label-smoothed cross-entropy (eps 0.1 as the paper) of logits [B, T, V] against targets [B, T], averaged
// over the non-pad target tokens.
Tensor label_smoothed_loss(const Tensor& logits, const Tensor& targets, int64_t pad_id, double epsilon = 0.1);
int64_t count_non_pad(const Tensor& targets, int64_t pad_id);

}  // namespace kolo::models
