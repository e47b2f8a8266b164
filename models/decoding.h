// Sequence generation: greedy and beam search (GNMT length penalty) over any incremental decoder, and
// the adapter that decodes a Transformer with cached keys/values.
//
// Beam search protocol: the decoder's state is expanded to batch*beam rows (row b*beam + k is beam k of
// sentence b). Each step scores beam x vocab continuations, keeps the best 2*beam (so that `beam` alive
// ones remain even if some end in EOS), moves finished ones (EOS) to the sentence's n-best list with score
// logp / lp(len), lp(len) = ((5 + len) / 6)^alpha (Wu et al. 2016; len counts the EOS), and reorders the
// decoder state to the surviving beams. A sentence is done when it has `beam` finished hypotheses and no
// alive beam can still beat the worst of them (an alive beam's normalised score can at best reach
// logp / lp(max_len), since logp only falls and lp only grows), or when max_len tokens were generated
// (alive beams are then finished as they are).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/tensor/tensor.h"
#include "models/transformer.h"

namespace kolo::models {

class IncrementalDecoder {
 public:
  virtual ~IncrementalDecoder() = default;
  // Log-probabilities [rows, V] of the next token given each row's newest token (i64 [rows]); the earlier
  // tokens of each row are in the decoder's state.
  virtual Tensor step(const Tensor& last_tokens) = 0;
  // Keeps state rows `index` (i64 [new_rows]) in that order.
  virtual void reorder(const Tensor& index) = 0;
};

struct DecodeOptions {
  int64_t bos_id = 1, eos_id = 2;
  int64_t max_len = 64;          // generated tokens, EOS included
  int64_t beam_size = 4;
  double length_penalty = 0.6;   // alpha; 0 = raw log-probability
};

struct Hypothesis {
  std::vector<int64_t> tokens;  // without BOS and EOS
  double log_prob = 0.0;        // sum of token log-probabilities (EOS included when it was produced)
  double score = 0.0;           // log_prob / lp(len)
};

double gnmt_length_penalty(int64_t length, double alpha);

// Each of `batch` rows takes its most likely token until EOS or max_len.
std::vector<Hypothesis> greedy_decode(IncrementalDecoder& decoder, int64_t batch, const DecodeOptions& opt);
// Best hypothesis per row; `decoder` must hold `batch` rows and is expanded to batch * beam_size.
std::vector<Hypothesis> beam_search(IncrementalDecoder& decoder, int64_t batch, const DecodeOptions& opt);

// Decodes a Transformer for a source batch: encodes once, then feeds one token per step with cached
// self-attention keys/values and encoder-attention projections.
class TransformerDecoder : public IncrementalDecoder {
 public:
  TransformerDecoder(Transformer& model, const Tensor& src);
  Tensor step(const Tensor& last_tokens) override;
  void reorder(const Tensor& index) override;

 private:
  Transformer& model_;
  Tensor memory_, memory_mask_;
  DecoderCache cache_;
};

// Translates src [B, S] with the model in eval mode and no autograd: beam search when beam_size > 1,
// greedy otherwise. Options' BOS/EOS are taken from the model's config.
std::vector<Hypothesis> translate(Transformer& model, const Tensor& src, DecodeOptions opt);

}  // namespace kolo::models
