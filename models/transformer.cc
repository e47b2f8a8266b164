// Transformer layers, the encoder-decoder model with tied embeddings, positions and the loss helper.
#include "models/transformer.h"

#include <cmath>

#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/nn.h"
#include "core/ops/shape_ops.h"
#include "models/layers/init.h"

namespace kolo::models {

TransformerConfig transformer_base(int64_t vocab_size) {
  TransformerConfig c;
  c.vocab_size = vocab_size;
  return c;
}

TransformerConfig transformer_big(int64_t vocab_size) {
  TransformerConfig c;
  c.vocab_size = vocab_size;
  c.d_model = 1024;
  c.ffn_dim = 4096;
  c.heads = 16;
  c.dropout = 0.3;
  return c;
}

void DecoderCache::reorder(const Tensor& index) {
  for (auto& c : self_attn) c.reorder(index);
  for (auto& c : encoder_attn) c.reorder(index);
}

EncoderLayer::EncoderLayer(const TransformerConfig& c, Generator& gen) : Module("EncoderLayer"), pre_norm_(c.pre_norm) {
  self_attn_ = register_module("self_attn", std::make_shared<MultiheadAttention>(c.d_model, c.heads,
                                                                                 c.attention_dropout, gen));
  self_attn_norm_ = register_module("self_attn_layer_norm", std::make_shared<LayerNorm>(c.d_model));
  ffn_ = register_module("ffn", std::make_shared<FeedForward>(c.d_model, c.ffn_dim, c.activation_dropout, gen));
  ffn_norm_ = register_module("final_layer_norm", std::make_shared<LayerNorm>(c.d_model));
  dropout_ = register_module("dropout", std::make_shared<Dropout>(c.dropout, init::fork_seed(gen)));
}

Tensor EncoderLayer::forward(const Tensor& x, const Tensor& mask) {
  // Post-norm: x = LN(x + drop(f(x))); pre-norm: x = x + drop(f(LN(x))).
  Tensor h = pre_norm_ ? self_attn_norm_->forward(x) : x;
  Tensor y = dropout_->forward_add(x, self_attn_->forward(h, h, mask));
  if (!pre_norm_) y = self_attn_norm_->forward(y);
  h = pre_norm_ ? ffn_norm_->forward(y) : y;
  y = dropout_->forward_add(y, ffn_->forward(h));
  if (!pre_norm_) y = ffn_norm_->forward(y);
  return note(y);
}

DecoderLayer::DecoderLayer(const TransformerConfig& c, Generator& gen) : Module("DecoderLayer"), pre_norm_(c.pre_norm) {
  self_attn_ = register_module("self_attn", std::make_shared<MultiheadAttention>(c.d_model, c.heads,
                                                                                 c.attention_dropout, gen));
  self_attn_norm_ = register_module("self_attn_layer_norm", std::make_shared<LayerNorm>(c.d_model));
  encoder_attn_ = register_module("encoder_attn", std::make_shared<MultiheadAttention>(c.d_model, c.heads,
                                                                                       c.attention_dropout, gen));
  encoder_attn_norm_ = register_module("encoder_attn_layer_norm", std::make_shared<LayerNorm>(c.d_model));
  ffn_ = register_module("ffn", std::make_shared<FeedForward>(c.d_model, c.ffn_dim, c.activation_dropout, gen));
  ffn_norm_ = register_module("final_layer_norm", std::make_shared<LayerNorm>(c.d_model));
  dropout_ = register_module("dropout", std::make_shared<Dropout>(c.dropout, init::fork_seed(gen)));
}

Tensor DecoderLayer::forward(const Tensor& x, const Tensor& memory, const Tensor& self_mask,
                             const Tensor& memory_mask, AttentionCache* self_cache, AttentionCache* encoder_cache) {
  Tensor h = pre_norm_ ? self_attn_norm_->forward(x) : x;
  Tensor y = dropout_->forward_add(x, self_attn_->forward(h, h, self_mask, self_cache));
  if (!pre_norm_) y = self_attn_norm_->forward(y);
  h = pre_norm_ ? encoder_attn_norm_->forward(y) : y;
  y = dropout_->forward_add(y, encoder_attn_->forward(h, memory, memory_mask, encoder_cache, true));
  if (!pre_norm_) y = encoder_attn_norm_->forward(y);
  h = pre_norm_ ? ffn_norm_->forward(y) : y;
  y = dropout_->forward_add(y, ffn_->forward(h));
  if (!pre_norm_) y = ffn_norm_->forward(y);
  return note(y);
}

Transformer::Transformer(const TransformerConfig& config) : Module("Transformer"), config_(config) {
  const TransformerConfig& c = config_;
  KOLO_CHECK(c.vocab_size > 0 && c.d_model > 0 && c.ffn_dim > 0 && c.encoder_layers > 0 && c.decoder_layers > 0,
             "Transformer: invalid config vocab ", c.vocab_size, " d_model ", c.d_model, " ffn ", c.ffn_dim,
             " layers ", c.encoder_layers, "+", c.decoder_layers);
  KOLO_CHECK(c.pad_id >= 0 && c.pad_id < c.vocab_size && c.bos_id < c.vocab_size && c.eos_id < c.vocab_size,
             "Transformer: special token ids outside vocab ", c.vocab_size);
  Generator gen(c.seed);
  // N(0, d^-1/2) so that the sqrt(d)-scaled embedding has unit variance (fairseq's shared-embedding init).
  embed_ = register_module("embed_tokens", std::make_shared<Embedding>(c.vocab_size, c.d_model,
                                                                      1.0 / std::sqrt(double(c.d_model)), gen,
                                                                      c.pad_id));
  embed_dropout_ = register_module("dropout", std::make_shared<Dropout>(c.dropout, init::fork_seed(gen)));
  auto enc = register_module("encoder", std::make_shared<ModuleList>());
  for (int64_t i = 0; i < c.encoder_layers; ++i) encoder_.push_back(enc->append(std::make_shared<EncoderLayer>(c, gen)));
  auto dec = register_module("decoder", std::make_shared<ModuleList>());
  for (int64_t i = 0; i < c.decoder_layers; ++i) decoder_.push_back(dec->append(std::make_shared<DecoderLayer>(c, gen)));
  if (c.pre_norm) {
    encoder_norm_ = register_module("encoder_layer_norm", std::make_shared<LayerNorm>(c.d_model));
    decoder_norm_ = register_module("decoder_layer_norm", std::make_shared<LayerNorm>(c.d_model));
  }
}

Tensor sinusoidal_positions(int64_t first, int64_t length, int64_t dim, DType dtype, Device device) {
  std::vector<double> pe(static_cast<size_t>(length * dim));
  for (int64_t t = 0; t < length; ++t)
    for (int64_t i = 0; i < dim; i += 2) {
      const double angle = double(first + t) / std::pow(10000.0, double(i) / double(dim));
      pe[t * dim + i] = std::sin(angle);
      if (i + 1 < dim) pe[t * dim + i + 1] = std::cos(angle);
    }
  return Tensor::from_vector(pe, {length, dim}).to(dtype).to(device);
}

Tensor Transformer::embed(const Tensor& ids, int64_t first_position) {
  KOLO_CHECK(ids.dim() == 2 && ids.dtype() == DType::I64, "Transformer: token ids must be i64 [B, T], got ",
             ids.describe());
  const Tensor& w = embed_->weight();
  Tensor x = scale(embed_->forward(ids), std::sqrt(double(config_.d_model)));
  x = add(x, sinusoidal_positions(first_position, ids.size(1), config_.d_model, w.dtype(), w.device()));
  return embed_dropout_->forward(x);
}

Tensor Transformer::memory_mask(const Tensor& src) const {
  KOLO_CHECK(src.dim() == 2 && src.dtype() == DType::I64, "Transformer: src must be i64 [B, S], got ", src.describe());
  const std::vector<int64_t> ids = src.to_vector<int64_t>();
  std::vector<float> keep(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) keep[i] = ids[i] != config_.pad_id ? 1.0f : 0.0f;
  const Tensor& w = embed_->weight();
  return padding_mask(Tensor::from_vector(keep, src.shape()).to(w.device()), w.dtype());
}

Tensor Transformer::encode(const Tensor& src, const Tensor& memory_mask) {
  Tensor x = embed(src, 0);
  for (auto& layer : encoder_) x = layer->forward(x, memory_mask);
  return encoder_norm_ ? encoder_norm_->forward(x) : x;
}

Tensor Transformer::decode(const Tensor& tgt_in, const Tensor& memory, const Tensor& memory_mask,
                           DecoderCache* cache) {
  const int64_t first = cache != nullptr ? cache->step : 0;
  KOLO_CHECK(cache == nullptr || cache->self_attn.size() == decoder_.size(),
             "Transformer::decode: cache built for ", cache ? cache->self_attn.size() : 0, " layers, model has ",
             decoder_.size());
  Tensor x = embed(tgt_in, first);
  const int64_t t = tgt_in.size(1);
  const Tensor& w = embed_->weight();
  // A query at position first+i may see keys 0 .. first+i: with a cache the earlier keys are all visible, so
  // the causal mask is only needed among the new positions, i.e. the last t columns.
  Tensor self_mask;
  if (t > 1) {
    self_mask = causal_mask(t, w.dtype(), w.device());
    if (first > 0) self_mask = cat({Tensor::zeros({1, 1, t, first}, w.dtype(), w.device()), self_mask}, 3);
  }
  for (size_t i = 0; i < decoder_.size(); ++i)
    x = decoder_[i]->forward(x, memory, self_mask, memory_mask, cache ? &cache->self_attn[i] : nullptr,
                             cache ? &cache->encoder_attn[i] : nullptr);
  if (decoder_norm_) x = decoder_norm_->forward(x);
  if (cache != nullptr) cache->step += t;
  // The output projection is the embedding matrix itself (tied): logits = x E^T.
  return note(linear(x, w));
}

Tensor Transformer::forward(const Tensor& src, const Tensor& tgt_in) {
  KOLO_CHECK(src.size(0) == tgt_in.size(0), "Transformer: batch sizes differ: src ", src.describe(), " tgt ",
             tgt_in.describe());
  const Tensor mask = memory_mask(src);
  return decode(tgt_in, encode(src, mask), mask);
}

DecoderCache Transformer::new_cache() const {
  DecoderCache c;
  c.self_attn.resize(decoder_.size());
  c.encoder_attn.resize(decoder_.size());
  return c;
}

Tensor label_smoothed_loss(const Tensor& logits, const Tensor& targets, int64_t pad_id, double epsilon) {
  KOLO_CHECK(logits.dim() == 3 && targets.dim() == 2 && logits.size(0) == targets.size(0) &&
                 logits.size(1) == targets.size(1),
             "label_smoothed_loss: expected logits [B, T, V] and targets [B, T], got ", logits.describe(), " and ",
             targets.describe());
  const int64_t n = logits.size(0) * logits.size(1);
  return cross_entropy(logits.reshape({n, logits.size(2)}), targets.reshape({n}), epsilon, pad_id);
}

int64_t count_non_pad(const Tensor& targets, int64_t pad_id) {
  int64_t n = 0;
  for (int64_t id : targets.to_vector<int64_t>()) n += id != pad_id;
  return n;
}

}  // namespace kolo::models
