// Greedy and beam search on a decoder whose next-token probabilities are a fixed table, so the right
// answers are known in closed form.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>

#include "models/decoding.h"

using namespace kolo;
using namespace kolo::models;

namespace {

constexpr int64_t kEos = 2, kA = 3, kB = 4, kV = 5;

// Row state: (sentence, tokens so far). Sentence 0 follows the table below; sentence 1 is the same with
// a and b swapped, so that reordering mistakes show up as wrong answers.
//   P(a)=.6 P(b)=.4;  after a: a .36, b .34, eos .3;  after b: eos .9, a .05, b .05;  after two: eos 1.
// Greedy: a a eos (p .216). Beam, alpha 0: b eos (p .36). Beam, alpha 4: a a eos, since
// ln(.216) / (8/6)^4 = -0.485 beats ln(.36) / (7/6)^4 = -0.552.
class TableDecoder : public IncrementalDecoder {
 public:
  explicit TableDecoder(int64_t batch) {
    for (int64_t b = 0; b < batch; ++b) rows_.push_back({b, {}});
  }
  Tensor step(const Tensor& last) override {
    const std::vector<int64_t> tok = last.to_vector<int64_t>();
    EXPECT_EQ(tok.size(), rows_.size());
    std::vector<float> out;
    for (size_t r = 0; r < rows_.size(); ++r) {
      auto& [sentence, prefix] = rows_[r];
      if (tok[r] != 1) prefix.push_back(tok[r]);
      std::map<int64_t, double> p;
      const int64_t a = sentence == 0 ? kA : kB, b = sentence == 0 ? kB : kA;
      auto is = [&](int64_t t) { return t == a; };
      if (prefix.empty())
        p = {{a, .6}, {b, .4}};
      else if (prefix.size() == 1 && is(prefix[0]))
        p = {{a, .36}, {b, .34}, {kEos, .3}};
      else if (prefix.size() == 1)
        p = {{kEos, .9}, {a, .05}, {b, .05}};
      else
        p = {{kEos, 1.0}};
      for (int64_t v = 0; v < kV; ++v)
        out.push_back(p.count(v) ? static_cast<float>(std::log(p[v])) : -std::numeric_limits<float>::infinity());
      ++steps_;
    }
    return Tensor::from_vector(out, {static_cast<int64_t>(rows_.size()), kV});
  }
  void reorder(const Tensor& index) override {
    std::vector<std::pair<int64_t, std::vector<int64_t>>> next;
    for (int64_t i : index.to_vector<int64_t>()) next.push_back(rows_[i]);
    rows_ = next;
  }
  int64_t steps_ = 0;

 private:
  std::vector<std::pair<int64_t, std::vector<int64_t>>> rows_;
};

}  // namespace

TEST(Decoding, LengthPenaltyIsGnmt) {
  EXPECT_DOUBLE_EQ(gnmt_length_penalty(1, 0.6), 1.0);
  EXPECT_NEAR(gnmt_length_penalty(7, 0.6), std::pow(2.0, 0.6), 1e-12);
  EXPECT_DOUBLE_EQ(gnmt_length_penalty(20, 0.0), 1.0);
}

TEST(Decoding, GreedyTakesTheLocallyBestToken) {
  TableDecoder dec(2);
  DecodeOptions opt;
  opt.length_penalty = 0.0;
  const auto h = greedy_decode(dec, 2, opt);
  EXPECT_EQ(h[0].tokens, (std::vector<int64_t>{kA, kA}));
  EXPECT_EQ(h[1].tokens, (std::vector<int64_t>{kB, kB}));
  EXPECT_NEAR(h[0].log_prob, std::log(0.6 * 0.36), 1e-6);
}

TEST(Decoding, BeamSearchFindsTheMoreLikelySequence) {
  TableDecoder dec(2);
  DecodeOptions opt;
  opt.beam_size = 2;
  opt.length_penalty = 0.0;
  opt.max_len = 10;
  const auto h = beam_search(dec, 2, opt);
  EXPECT_EQ(h[0].tokens, (std::vector<int64_t>{kB}));
  EXPECT_EQ(h[1].tokens, (std::vector<int64_t>{kA}));
  EXPECT_NEAR(h[0].log_prob, std::log(0.36), 1e-6);
  EXPECT_NEAR(h[0].score, std::log(0.36), 1e-6);
}

TEST(Decoding, LengthPenaltyFavoursTheLongerHypothesis) {
  TableDecoder dec(2);
  DecodeOptions opt;
  opt.beam_size = 2;
  opt.length_penalty = 4.0;
  opt.max_len = 10;
  const auto h = beam_search(dec, 2, opt);
  EXPECT_EQ(h[0].tokens, (std::vector<int64_t>{kA, kA}));
  EXPECT_EQ(h[1].tokens, (std::vector<int64_t>{kB, kB}));
  EXPECT_NEAR(h[0].score, std::log(0.216) / std::pow(8.0 / 6.0, 4.0), 1e-6);
  // Early stop: once every alive beam is gone (here after 3 steps), no more steps are taken.
  EXPECT_LE(dec.steps_, 3 * 4);
}

TEST(Decoding, MaxLenCutsHypothesesWithoutEos) {
  TableDecoder dec(1);
  DecodeOptions opt;
  opt.beam_size = 2;
  opt.length_penalty = 0.0;
  opt.max_len = 1;
  const auto h = beam_search(dec, 1, opt);
  EXPECT_EQ(h[0].tokens, (std::vector<int64_t>{kA}));  // best of the unfinished length-1 beams
  EXPECT_NEAR(h[0].log_prob, std::log(0.6), 1e-6);
  TableDecoder dec2(1);
  EXPECT_EQ(greedy_decode(dec2, 1, opt)[0].tokens, (std::vector<int64_t>{kA}));
  opt.beam_size = 0;
  EXPECT_THROW(beam_search(dec2, 1, opt), Error);
}

// An empty batch decodes to nothing (it divided by zero); a negative length penalty is refused, since the beam's
// early stop assumes the penalty grows with length.
TEST(Decoding, EmptyBatchAndNegativeLengthPenalty) {
  TableDecoder dec(0);
  DecodeOptions opt;
  opt.beam_size = 2;
  EXPECT_TRUE(greedy_decode(dec, 0, opt).empty());
  EXPECT_TRUE(beam_search(dec, 0, opt).empty());
  TableDecoder two(2);
  opt.length_penalty = -1.0;
  EXPECT_THROW(beam_search(two, 2, opt), Error);
}
