// Multi-head attention with key/value caching, and the position-wise feed-forward block.
#include "models/layers/attention.h"

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/nn.h"
#include "core/ops/shape_ops.h"
#include "models/layers/init.h"

namespace kolo::models {

Tensor gather_rows(const Tensor& t, const Tensor& index) {
  NoGradGuard ng;
  KOLO_CHECK(index.dim() == 1 && index.dtype() == DType::I64, "gather_rows: index must be i64 [n], got ",
             index.describe());
  const std::vector<int64_t> idx = index.to_vector<int64_t>();
  std::vector<Tensor> rows;
  rows.reserve(idx.size());
  for (int64_t i : idx) {
    KOLO_CHECK(i >= 0 && i < t.size(0), "gather_rows: row ", i, " out of range for ", t.describe());
    rows.push_back(t.slice(0, i, i + 1));
  }
  return cat(rows, 0);
}

void AttentionCache::reorder(const Tensor& index) {
  if (empty()) return;
  k = gather_rows(k, index);
  v = gather_rows(v, index);
}

MultiheadAttention::MultiheadAttention(int64_t dim, int64_t heads, double attention_dropout, Generator& gen)
    : Module("MultiheadAttention"),
      dim_(dim),
      heads_(heads),
      attention_dropout_(attention_dropout),
      gen_(init::fork_seed(gen)) {
  KOLO_CHECK(heads > 0 && dim % heads == 0, "MultiheadAttention: dim ", dim, " not divisible by heads ", heads);
  q_proj_ = register_module("q_proj", std::make_shared<Linear>(dim, dim, true, gen, LinearInit::kXavier));
  k_proj_ = register_module("k_proj", std::make_shared<Linear>(dim, dim, true, gen, LinearInit::kXavier));
  v_proj_ = register_module("v_proj", std::make_shared<Linear>(dim, dim, true, gen, LinearInit::kXavier));
  out_proj_ = register_module("out_proj", std::make_shared<Linear>(dim, dim, true, gen, LinearInit::kXavier));
  register_generator("rng", &gen_);
}

Tensor MultiheadAttention::split_heads(const Tensor& x) const {
  return x.reshape({x.size(0), x.size(1), heads_, dim_ / heads_}).transpose(1, 2);
}

Tensor MultiheadAttention::forward(const Tensor& query, const Tensor& key_value, const Tensor& mask,
                                   AttentionCache* cache, bool static_kv) {
  KOLO_CHECK(query.dim() == 3 && query.size(2) == dim_ && key_value.dim() == 3 && key_value.size(2) == dim_ &&
                 key_value.size(0) == query.size(0),
             "MultiheadAttention: expected query [B, Tq, ", dim_, "] and key_value [B, Tk, ", dim_, "], got ",
             query.describe(), " and ", key_value.describe());
  const Tensor q = split_heads(q_proj_->forward(query));
  Tensor k, v;
  if (cache != nullptr && static_kv && !cache->empty()) {
    k = cache->k;
    v = cache->v;
  } else {
    k = split_heads(k_proj_->forward(key_value));
    v = split_heads(v_proj_->forward(key_value));
    if (cache != nullptr && !static_kv && !cache->empty()) {
      k = cat({cache->k, k}, 2);
      v = cat({cache->v, v}, 2);
    }
    if (cache != nullptr) {
      cache->k = k;
      cache->v = v;
    }
  }
  Tensor y = scaled_dot_product_attention(q, k, v, mask, 0.0, attention_dropout_, is_training(), &gen_);
  y = y.transpose(1, 2).reshape({query.size(0), query.size(1), dim_});
  return note(out_proj_->forward(y));
}

FeedForward::FeedForward(int64_t dim, int64_t hidden, double activation_dropout, Generator& gen)
    : Module("FeedForward") {
  fc1_ = register_module("fc1", std::make_shared<Linear>(dim, hidden, true, gen, LinearInit::kXavier));
  fc2_ = register_module("fc2", std::make_shared<Linear>(hidden, dim, true, gen, LinearInit::kXavier));
  dropout_ = register_module("dropout", std::make_shared<Dropout>(activation_dropout, init::fork_seed(gen)));
}

Tensor FeedForward::forward(const Tensor& x) {
  // With activation dropout, ReLU and dropout share one pass. Without it (Transformer-big's setting) the block
  // is one feed_forward op: the ReLU and its derivative ride on the GEMM epilogues. A summary run goes
  // through the layers so that each reports its shape.
  if (dropout_->active()) return note(fc2_->forward(dropout_->forward_relu(fc1_->forward(x))));
  if (recording_shapes()) return note(fc2_->forward(fc1_->forward_relu(x)));
  return note(feed_forward(x, fc1_->weight(), fc1_->bias(), fc2_->weight(), fc2_->bias()));
}

}  // namespace kolo::models
