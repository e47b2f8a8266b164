// Token batching plan, batch tensors and the prefetching TokenLoader.
#include "core/data/token_loader.h"

#include <algorithm>
#include <numeric>

#include "core/util/error.h"

namespace kolo::data {
namespace {

int64_t count_batches_samples(const std::vector<std::vector<int64_t>>& batches) {
  return std::accumulate(batches.begin(), batches.end(), int64_t{0},
                         [](int64_t s, const auto& b) { return s + static_cast<int64_t>(b.size()); });
}

}  // namespace

int64_t padded_length(const TokenPair& p) {
  return static_cast<int64_t>(std::max(p.src.size(), p.tgt.size())) + 1;
}

std::vector<std::vector<int64_t>> plan_token_batches(const std::vector<int64_t>& lengths, int64_t max_tokens,
                                                     uint64_t seed) {
  KOLO_CHECK(max_tokens > 0, "plan_token_batches: max_tokens ", max_tokens, " must be positive");
  std::vector<int64_t> order;
  for (int64_t i = 0; i < static_cast<int64_t>(lengths.size()); ++i)
    if (lengths[i] <= max_tokens) order.push_back(i);
  std::vector<uint64_t> tiebreak(lengths.size());
  for (size_t i = 0; i < lengths.size(); ++i) tiebreak[i] = Generator::hash(seed, i);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return lengths[a] != lengths[b] ? lengths[a] < lengths[b] : tiebreak[a] < tiebreak[b];
  });
  std::vector<std::vector<int64_t>> batches;
  std::vector<int64_t> cur;
  int64_t cur_max = 0;
  for (int64_t i : order) {
    const int64_t longest = std::max(cur_max, lengths[i]);
    if (!cur.empty() && longest * static_cast<int64_t>(cur.size() + 1) > max_tokens) {
      batches.push_back(std::move(cur));
      cur.clear();
      cur_max = 0;
    }
    cur.push_back(i);
    cur_max = std::max(cur_max, lengths[i]);
  }
  if (!cur.empty()) batches.push_back(std::move(cur));
  return batches;
}

TokenBatch make_token_batch(const std::vector<TokenPair>& data, const std::vector<int64_t>& ids,
                            const TokenLoaderOptions& o) {
  const auto b = static_cast<int64_t>(ids.size());
  int64_t s_len = 1, t_len = 1;
  for (int64_t id : ids) {
    s_len = std::max<int64_t>(s_len, static_cast<int64_t>(data[id].src.size()) + 1);
    t_len = std::max<int64_t>(t_len, static_cast<int64_t>(data[id].tgt.size()) + 1);
  }
  TokenBatch out;
  out.src = Tensor::full({b, s_len}, o.pad, DType::I64);
  out.tgt_in = Tensor::full({b, t_len}, o.pad, DType::I64);
  out.tgt_out = Tensor::full({b, t_len}, o.pad, DType::I64);
  out.src_mask = Tensor::zeros({b, s_len}, DType::F32);
  out.tgt_mask = Tensor::zeros({b, t_len}, DType::F32);
  int64_t* src = out.src.data<int64_t>();
  int64_t* tin = out.tgt_in.data<int64_t>();
  int64_t* tout = out.tgt_out.data<int64_t>();
  float* smask = out.src_mask.data<float>();
  float* tmask = out.tgt_mask.data<float>();
  for (int64_t r = 0; r < b; ++r) {
    const TokenPair& p = data[ids[r]];
    const auto ns = static_cast<int64_t>(p.src.size()), nt = static_cast<int64_t>(p.tgt.size());
    for (int64_t k = 0; k < ns; ++k) src[r * s_len + k] = p.src[k];
    src[r * s_len + ns] = o.eos;
    for (int64_t k = 0; k <= ns; ++k) smask[r * s_len + k] = 1.0f;
    tin[r * t_len] = o.bos;
    for (int64_t k = 0; k < nt; ++k) {
      tin[r * t_len + k + 1] = p.tgt[k];
      tout[r * t_len + k] = p.tgt[k];
    }
    tout[r * t_len + nt] = o.eos;
    for (int64_t k = 0; k <= nt; ++k) tmask[r * t_len + k] = 1.0f;
    out.src_tokens += ns + 1;
    out.tgt_tokens += nt + 1;
  }
  out.sample_ids = ids;
  return out;
}

TokenLoader::TokenLoader(std::shared_ptr<const std::vector<TokenPair>> data, TokenLoaderOptions options)
    : data_(std::move(data)), options_(options),
      batches_([&] {
        KOLO_CHECK(data_ != nullptr, "TokenLoader: no data");
        std::vector<int64_t> lengths;
        for (const auto& p : *data_) lengths.push_back(padded_length(p));
        return plan_token_batches(lengths, options.max_tokens, options.shard.seed);
      }()),
      num_filtered_(static_cast<int64_t>(data_->size()) - count_batches_samples(batches_)),
      sampler_(static_cast<int64_t>(batches_.size()), options.shard) {}

TokenLoader::~TokenLoader() { prefetcher_.reset(); }

void TokenLoader::set_state(LoaderState state) {
  KOLO_CHECK(state.epoch >= 0 && state.index >= 0 && state.index <= batches_per_epoch(),
             "TokenLoader::set_state: position (epoch ", state.epoch, ", batch ", state.index, ") outside an epoch of ",
             batches_per_epoch(), " batches");
  prefetcher_.reset();
  state_ = state;
}

std::optional<TokenBatch> TokenLoader::next() {
  if (!prefetcher_) {
    epoch_batches_ = sampler_.epoch_items(state_.epoch);
    prefetcher_ = std::make_unique<Prefetcher<TokenBatch>>(
        [this](int64_t k) { return make_token_batch(*data_, batches_[epoch_batches_[k]], options_); }, state_.index,
        static_cast<int64_t>(epoch_batches_.size()), options_.prefetch);
  }
  std::optional<TokenBatch> batch = prefetcher_->next();
  if (!batch) prefetcher_.reset();
  state_.advance(batch.has_value());
  return batch;
}

std::vector<TokenPair> tokenize_pairs(const std::vector<SentencePair>& pairs, const BpeTokenizer& src_tok,
                                      const BpeTokenizer& tgt_tok) {
  std::vector<TokenPair> out;
  out.reserve(pairs.size());
  for (const auto& p : pairs) out.push_back({src_tok.encode(p.src), tgt_tok.encode(p.tgt)});
  return out;
}

std::vector<TokenPair> synthetic_token_pairs(int64_t n, int64_t vocab, int64_t min_len, int64_t max_len,
                                             SyntheticTask task, uint64_t seed, int32_t first_id) {
  KOLO_CHECK(vocab > first_id && min_len >= 1 && max_len >= min_len, "synthetic_token_pairs: vocab ", vocab,
             " (first id ", first_id, "), lengths [", min_len, ", ", max_len, "]");
  std::vector<TokenPair> out(n);
  const auto span = static_cast<uint64_t>(vocab - first_id);
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t key = Generator::hash(seed, static_cast<uint64_t>(i));
    const int64_t len = min_len + static_cast<int64_t>(Generator::hash(key, 0) % static_cast<uint64_t>(max_len - min_len + 1));
    TokenPair& p = out[i];
    for (int64_t k = 0; k < len; ++k) p.src.push_back(first_id + static_cast<int32_t>(Generator::hash(key, k + 1) % span));
    if (task == SyntheticTask::kCopy) {
      p.tgt = p.src;
    } else if (task == SyntheticTask::kReverse) {
      p.tgt.assign(p.src.rbegin(), p.src.rend());
    } else {
      for (int64_t k = 0; k < len; ++k)
        p.tgt.push_back(first_id + static_cast<int32_t>(Generator::hash(key, len + k + 1) % span));
    }
  }
  return out;
}

}  // namespace kolo::data
