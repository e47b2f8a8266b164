// Multi-head attention (Vaswani et al.) with an optional key/value cache for incremental decoding.
//
// Layout is batch-first: query [B, Tq, D], key_value [B, Tk, D] -> [B, Tq, D]. With a cache, self-attention
// appends this step's keys/values to the cached ones (so a decoder step feeds only the new position), and
// encoder-decoder attention (static_kv) computes the memory's keys/values once and reuses them.
#pragma once

#include <memory>

#include "models/layers/basic.h"

namespace kolo::models {

struct AttentionCache {
  Tensor k, v;  // [B, H, T, Dh]
  bool empty() const { return !k.defined(); }
  // Keeps batch rows `index` (i64 [B']) in that order: beam-search reordering and expansion.
  void reorder(const Tensor& index);
};

class MultiheadAttention : public Module {
 public:
  MultiheadAttention(int64_t dim, int64_t heads, double attention_dropout, Generator& gen);
  // mask: additive, broadcastable to [B, H, Tq, Tk] (causal_mask / padding_mask), or undefined.
  Tensor forward(const Tensor& query, const Tensor& key_value, const Tensor& mask, AttentionCache* cache = nullptr,
                 bool static_kv = false);
  int64_t heads() const { return heads_; }

 private:
  Tensor split_heads(const Tensor& x) const;  // [B, T, D] -> [B, H, T, Dh]

  int64_t dim_, heads_;
  double attention_dropout_;
  Generator gen_;
  std::shared_ptr<Linear> q_proj_, k_proj_, v_proj_, out_proj_;
};

// Position-wise feed-forward: fc2(dropout(relu(fc1(x)))).
class FeedForward : public Module {
 public:
  FeedForward(int64_t dim, int64_t hidden, double activation_dropout, Generator& gen);
  Tensor forward(const Tensor& x);

 private:
  std::shared_ptr<Linear> fc1_, fc2_;
  std::shared_ptr<Dropout> dropout_;
};

// Rows `index` (i64 [n]) of `t` along dim 0, in that order (not differentiable; used on caches).
Tensor gather_rows(const Tensor& t, const Tensor& index);

}  // namespace kolo::models
