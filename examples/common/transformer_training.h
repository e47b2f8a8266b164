// Data-parallel Transformer training as train_transformer runs it, callable from tests: options in, loss
// curve, tokens/sec and held-out BLEU out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "collectives/runtime.h"
#include "examples/common/precision.h"

namespace kolo::examples {

struct TransformerRunOptions {
  std::string model = "base";         // base | big | tiny (d 64, 2+2 layers: CPU tests)
  bool pre_norm = false;
  double dropout = -1;                // < 0: the model's default
  std::string dataset = "synthetic";  // synthetic | copy | reverse | de_en | tsv
  std::string data_path;              // tsv file; de_en: the Ding dictionary (default /usr/share/trans/de-en)
  // Token tasks (synthetic, copy, reverse): vocabulary, sentence counts and lengths.
  int64_t vocab = 64;
  int64_t train_sentences = 20000;
  int64_t min_len = 4, max_len = 12;
  // Text tasks (de_en, tsv): BPE learned on the training split, cached at bpe_vocab when given.
  std::string bpe_vocab;
  int64_t bpe_size = 8000;
  int64_t test_sentences = 500;       // held out for BLEU
  int64_t tokens_per_rank = 4096;     // padded tokens per batch per rank
  int64_t steps = 0;                  // 0: `epochs` epochs
  double epochs = 0;
  double lr = 5e-4;                   // peak
  std::string lr_schedule = "inverse_sqrt";  // inverse_sqrt | noam | constant (+ warmup_steps)
  int64_t warmup_steps = 4000;
  double beta1 = 0.9, beta2 = 0.98, eps = 1e-9;
  double weight_decay = 0.0;
  double clip_norm = 0.0;
  double label_smoothing = 0.1;
  bool sparse_as_dense = false;
  Precision precision = Precision::F32;  // bf16/fp16: low-precision model, f32 master weights
  std::string device = "auto";
  int64_t display_every = 50;
  std::string checkpoint_dir;
  int64_t checkpoint_every = 0;
  bool resume = false;
  uint64_t seed = 0;
  bool summary = false;
  int64_t beam_size = 1;              // 1: greedy
  double length_penalty = 0.6;
  int64_t show_translations = 3;      // rank 0 prints this many held-out examples
  bool print = true;
};

struct TransformerRunResult {
  std::vector<double> losses;   // this rank's loss of every step run in this call
  double tokens_per_sec = 0;    // target tokens, all ranks, after warm-up
  double bleu = -1;             // held-out BLEU (0..100); -1 when not evaluated
  bool diverged = false;        // a non-finite loss stopped training
  int64_t steps = 0;
  int64_t skipped_steps = 0;    // fp16: steps skipped for overflow
};

// Collective over the runtime's ranks.
TransformerRunResult run_transformer(Runtime& runtime, const TransformerRunOptions& options);

}  // namespace kolo::examples
