// Token batches for sequence-to-sequence training: length bucketing, ~max_tokens per batch per rank,
// padding masks, sharded by rank and shuffled per epoch, prefetched on a background thread.
//
// Batching (as fairseq/tensor2tensor): samples are ordered by padded length (ties broken by the seed),
// then cut greedily into batches whose padded size B * max(S, T) stays within max_tokens; each batch
// thus holds sentences of nearly equal length (bucketing with width 1). The batch list is fixed; each
// epoch a seeded permutation of it is dealt out round-robin to ranks (ShardSampler), so every sample is
// in exactly one rank's batch per epoch (ShardMode::kExact) or every rank gets the same number of
// batches (kEven, the default for training).
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "core/data/bpe.h"
#include "core/data/prefetcher.h"
#include "core/data/shard_sampler.h"
#include "core/data/text_corpus.h"
#include "core/tensor/tensor.h"

namespace kolo::data {

struct TokenPair {
  std::vector<int32_t> src;  // without <s> / </s>
  std::vector<int32_t> tgt;
};

struct TokenBatch {
  Tensor src;       // i64 [B, S]: tokens, </s>, then <pad>
  Tensor src_mask;  // f32 [B, S]: 1 for real tokens, 0 for padding
  Tensor tgt_in;    // i64 [B, T]: <s>, tokens (decoder input)
  Tensor tgt_out;   // i64 [B, T]: tokens, </s> (what the decoder predicts)
  Tensor tgt_mask;  // f32 [B, T]
  int64_t src_tokens = 0;  // non-padding counts
  int64_t tgt_tokens = 0;
  std::vector<int64_t> sample_ids;  // index of each row in the data set
};

struct TokenLoaderOptions {
  int64_t max_tokens = 25600;  // padded tokens per batch (per rank)
  ShardOptions shard;
  int prefetch = 2;
  int32_t pad = BpeTokenizer::kPad;
  int32_t bos = BpeTokenizer::kBos;
  int32_t eos = BpeTokenizer::kEos;
};

// Padded length of a pair in a batch: max(|src| + 1, |tgt| + 1).
int64_t padded_length(const TokenPair& p);
// The batch list described above; samples longer than max_tokens are left out.
std::vector<std::vector<int64_t>> plan_token_batches(const std::vector<int64_t>& lengths, int64_t max_tokens,
                                                     uint64_t seed);
// Builds the tensors of one batch from the given samples.
TokenBatch make_token_batch(const std::vector<TokenPair>& data, const std::vector<int64_t>& ids,
                            const TokenLoaderOptions& options);

class TokenLoader {
 public:
  TokenLoader(std::shared_ptr<const std::vector<TokenPair>> data, TokenLoaderOptions options);
  ~TokenLoader();

  // nullopt once at the end of each epoch; the following call starts the next epoch.
  std::optional<TokenBatch> next();
  int64_t batches_per_epoch() const { return sampler_.items_per_rank(); }
  int64_t num_batches_total() const { return static_cast<int64_t>(batches_.size()); }
  // Samples dropped because they alone exceed max_tokens.
  int64_t num_filtered() const { return num_filtered_; }
  LoaderState state() const { return state_; }
  void set_state(LoaderState state);

 private:
  std::shared_ptr<const std::vector<TokenPair>> data_;
  TokenLoaderOptions options_;
  std::vector<std::vector<int64_t>> batches_;
  int64_t num_filtered_ = 0;
  ShardSampler sampler_;
  LoaderState state_;
  std::vector<int64_t> epoch_batches_;
  std::unique_ptr<Prefetcher<TokenBatch>> prefetcher_;
};

// Encodes sentence pairs (one tokenizer per side; pass the same one for a shared vocabulary).
std::vector<TokenPair> tokenize_pairs(const std::vector<SentencePair>& pairs, const BpeTokenizer& src_tok,
                                      const BpeTokenizer& tgt_tok);

// Synthetic sequence pairs for benchmarks and learnable toy tasks: random source ids in
// [first_id, vocab), length uniform in [min_len, max_len]; the target is random, a copy, or the reverse.
enum class SyntheticTask { kRandom, kCopy, kReverse };
std::vector<TokenPair> synthetic_token_pairs(int64_t n, int64_t vocab, int64_t min_len, int64_t max_len,
                                             SyntheticTask task, uint64_t seed, int32_t first_id = BpeTokenizer::kNumSpecial);

}  // namespace kolo::data
