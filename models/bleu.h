// Corpus BLEU computed exactly as sacreBLEU 2.x does (13a or whitespace tokenisation, 'exp' smoothing).
//
// Statistics are additive: each rank may score its share of a test set with segment_stats, sum the
// BleuStats (e.g. allreduce of to_counts()) and call score() once, which equals scoring the whole set.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kolo {

enum class BleuTokenize { k13a, kNone };

constexpr int kBleuMaxOrder = 4;

struct BleuStats {
  int64_t sys_len = 0;
  int64_t ref_len = 0;
  std::array<int64_t, kBleuMaxOrder> correct{};
  std::array<int64_t, kBleuMaxOrder> total{};

  BleuStats& operator+=(const BleuStats& o);
  // Flat [sys_len, ref_len, correct..., total...] for summing across ranks; from_counts inverts it.
  std::vector<int64_t> to_counts() const;
  static BleuStats from_counts(const std::vector<int64_t>& counts);
};

struct BleuScore {
  double score = 0.0;  // 0..100
  double bp = 0.0;
  std::array<double, kBleuMaxOrder> precisions{};
  BleuStats stats;
};

// mteval-v13a tokenisation as sacreBLEU's Tokenizer13a (operates on UTF-8 bytes, which is equivalent
// for its patterns since they only ever split around ASCII characters).
std::string tokenize_13a(std::string_view line);

// Statistics of one hypothesis against its references (at least one).
BleuStats segment_stats(std::string_view hypothesis, const std::vector<std::string_view>& references,
                        BleuTokenize tokenize = BleuTokenize::k13a, bool lowercase = false);

// Final score from summed statistics ('exp' smoothing, brevity penalty, geometric mean of 4 orders).
BleuScore bleu_from_stats(const BleuStats& stats);

// `references` holds reference sets (streams), each with one line per hypothesis, as sacrebleu's
// corpus_bleu(hyps, [refs1, refs2, ...]).
BleuScore corpus_bleu(const std::vector<std::string>& hypotheses,
                      const std::vector<std::vector<std::string>>& references,
                      BleuTokenize tokenize = BleuTokenize::k13a, bool lowercase = false);

}  // namespace kolo
