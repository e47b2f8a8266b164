// Corpus BLEU against golden numbers from PyPI sacrebleu (scripts/gen_bleu_reference.py).
#include "models/bleu.h"

#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "core/util/error.h"

namespace kolo {
namespace {

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

TEST(Bleu, SacrebleuReadmeExample) {
  const std::vector<std::string> hyps = {"The dog bit the man.", "It wasn't surprising.",
                                         "The man had just bitten him."};
  const std::vector<std::vector<std::string>> refs = {
      {"The dog bit the man.", "It was not unexpected.", "The man bit him first."},
      {"The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."}};
  EXPECT_NEAR(corpus_bleu(hyps, refs, BleuTokenize::k13a).score, 48.530827, 1e-6);
  EXPECT_NEAR(corpus_bleu(hyps, refs, BleuTokenize::kNone).score, 49.1919566, 1e-6);
}

TEST(Bleu, Tokenize13a) {
  EXPECT_EQ(tokenize_13a("It wasn't surprising."), "It wasn't surprising .");
  EXPECT_EQ(tokenize_13a("Pay $3.50, or 1,000 (not 2-3)!"), "Pay $ 3.50 , or 1,000 ( not 2 - 3 ) !");
  EXPECT_EQ(tokenize_13a("Tom &amp; Jerry &lt;3"), "Tom & Jerry < 3");
  EXPECT_EQ(tokenize_13a("end.<skipped>"), "end .");
}

TEST(Bleu, StatsAreAdditive) {
  const std::vector<std::string> hyps = {"the cat sat on the mat", "a dog ran off", "hello there"};
  const std::vector<std::vector<std::string>> refs = {{"the cat is on the mat", "a dog ran away", "hi there"}};
  BleuStats sum;
  for (size_t i = 0; i < hyps.size(); ++i) sum += segment_stats(hyps[i], {refs[0][i]});
  const BleuScore whole = corpus_bleu(hyps, refs);
  EXPECT_EQ(sum.to_counts(), whole.stats.to_counts());
  EXPECT_DOUBLE_EQ(bleu_from_stats(BleuStats::from_counts(sum.to_counts())).score, whole.score);
}

TEST(Bleu, MismatchedReferenceCountThrows) {
  EXPECT_THROW(corpus_bleu({"a", "b"}, {{"a"}}), Error);
}

// Every corpus in bleu_golden.txt, both tokenizers: score and all raw statistics.
TEST(Bleu, GoldenCorporaMatchSacrebleu) {
  const std::string dir = KOLO_DATA_TESTDATA_DIR;
  const auto golden = read_lines(dir + "/bleu_golden.txt");
  int checked = 0;
  for (const std::string& line : golden) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream is(line);
    std::string name, tok;
    double score;
    BleuStats want;
    is >> name >> tok >> score >> want.sys_len >> want.ref_len;
    for (auto& c : want.correct) is >> c;
    for (auto& t : want.total) is >> t;
    ASSERT_FALSE(is.fail()) << line;
    const auto hyps = read_lines(dir + "/bleu_" + name + ".hyp");
    std::vector<std::vector<std::string>> refs;
    for (int k = 0;; ++k) {
      std::ifstream probe(dir + "/bleu_" + name + ".ref" + std::to_string(k));
      if (!probe.good()) break;
      refs.push_back(read_lines(dir + "/bleu_" + name + ".ref" + std::to_string(k)));
    }
    ASSERT_FALSE(refs.empty()) << name;
    const BleuScore got = corpus_bleu(hyps, refs, tok == "13a" ? BleuTokenize::k13a : BleuTokenize::kNone);
    SCOPED_TRACE(name + " " + tok);
    EXPECT_EQ(got.stats.to_counts(), want.to_counts());
    EXPECT_NEAR(got.score, score, 1e-9 * std::max(1.0, score));
    ++checked;
  }
  EXPECT_GE(checked, 12);
}

// Lowercased BLEU folds ASCII as sacreBLEU does; non-ASCII text, which sacreBLEU lowercases with Unicode rules, is
// refused instead of scored differently ("Über" against "über" would have missed).
TEST(Bleu, LowercaseFoldsAsciiAndRefusesOtherText) {
  EXPECT_DOUBLE_EQ(corpus_bleu({"The Cat sat on The Mat ."}, {{"the cat sat on the mat ."}}, BleuTokenize::k13a, true)
                       .score,
                   100.0);
  EXPECT_THROW(corpus_bleu({"Über die Straße"}, {{"über die Straße"}}, BleuTokenize::k13a, true), Error);
}

}  // namespace
}  // namespace kolo
