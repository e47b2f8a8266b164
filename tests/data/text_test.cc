// Parallel text readers (TSV, aligned files, Ding dictionary), BPE, and token batching.
#include <filesystem>
#include <fstream>
#include <numeric>

#include <unistd.h>

#include <gtest/gtest.h>

#include "core/data/bpe.h"
#include "core/data/text_corpus.h"
#include "core/data/token_loader.h"
#include "core/util/error.h"

namespace kolo::data {
namespace {
namespace fs = std::filesystem;

fs::path temp_file(const std::string& name, const std::string& content) {
  fs::path p = fs::temp_directory_path() / ("kolo_text_test_" + std::to_string(::getpid()) + "_" + name);
  std::ofstream(p) << content;
  return p;
}

template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(TextCorpus, TsvPairsAndErrors) {
  const auto p = temp_file("ok.tsv", "Hallo Welt.\tHello world.\n\nGuten Tag!\tGood day!\r\n");
  const auto pairs = read_tsv_pairs(p.string());
  ASSERT_EQ(pairs.size(), 2u);
  EXPECT_EQ(pairs[1].src, "Guten Tag!");
  EXPECT_EQ(pairs[1].tgt, "Good day!");
  const auto bad = temp_file("bad.tsv", "a\tb\nc\td\nno tab here\n");
  const std::string msg = error_of([&] { read_tsv_pairs(bad.string()); });
  EXPECT_NE(msg.find(bad.string() + ":3: expected 'source<TAB>target'"), std::string::npos) << msg;
  const auto empty = temp_file("empty.tsv", "a\t \n");
  EXPECT_NE(error_of([&] { read_tsv_pairs(empty.string()); }).find(":1: empty target"), std::string::npos);
  EXPECT_NE(error_of([&] { read_tsv_pairs("/nonexistent/x.tsv"); }).find("/nonexistent/x.tsv"), std::string::npos);
  fs::remove(p);
  fs::remove(bad);
  fs::remove(empty);
}

TEST(TextCorpus, AlignedFiles) {
  const auto a = temp_file("a.txt", "eins\nzwei\n"), b = temp_file("b.txt", "one\ntwo\n"),
             c = temp_file("c.txt", "one\n");
  const auto pairs = read_aligned_files(a.string(), b.string());
  ASSERT_EQ(pairs.size(), 2u);
  EXPECT_EQ(pairs[1].tgt, "two");
  const std::string msg = error_of([&] { read_aligned_files(a.string(), c.string()); });
  EXPECT_NE(msg.find(c.string()), std::string::npos) << msg;
  for (const auto& p : {a, b, c}) fs::remove(p);
}

TEST(TextCorpus, DingFormat) {
  const auto p = temp_file("ding.txt",
                           "# comment :: line\n"
                           "Tag {m} | Es war ein schöner Tag. :: day | It was a nice day.\n"
                           "Haus {n} [arch.] :: house\n"
                           "Sie kam {vi} [ugs.] zu spät! | kurz :: She came too late! | short\n");
  const auto pairs = read_ding_sentences(p.string());
  ASSERT_EQ(pairs.size(), 2u);
  EXPECT_EQ(pairs[0].src, "Es war ein schöner Tag.");
  EXPECT_EQ(pairs[0].tgt, "It was a nice day.");
  EXPECT_EQ(pairs[1].src, "Sie kam zu spät!");
  const auto bad = temp_file("ding_bad.txt", "a :: b\na | b :: c\n");
  EXPECT_NE(error_of([&] { read_ding_sentences(bad.string()); }).find(":2: 2 German parts but 1 English"),
            std::string::npos);
  fs::remove(p);
  fs::remove(bad);
}

TEST(TextCorpus, DebianDingDictionaryYieldsRealSentences) {
  if (!fs::exists(kDingDeEnPath)) GTEST_SKIP() << "trans-de-en not installed";
  const auto pairs = read_ding_sentences();
  EXPECT_GT(pairs.size(), 15000u);
  EXPECT_LT(pairs.size(), 25000u);
  bool found = false;
  for (const auto& p : pairs) found = found || (p.src == "Es war ein ereignisreicher Tag." && p.tgt == "It was an eventful day.");
  EXPECT_TRUE(found);
  const auto [train, test] = split_pairs(pairs, 500, 1);
  EXPECT_EQ(test.size(), 500u);
  EXPECT_EQ(train.size() + test.size(), pairs.size());
}

const std::vector<std::string> kText = {
    "the lower the newer , the wider the newest .", "low lower lowest newest widest", "Es war ein Tag.",
    "the widest river flows lower than the newest one", "ein neuer Tag, ein neues Glück!"};

TEST(Bpe, LearnsMergesAndRoundTrips) {
  const BpeTokenizer tok = BpeTokenizer::train(kText, {.vocab_size = 80, .min_frequency = 2});
  EXPECT_GT(tok.num_merges(), 5);
  EXPECT_LE(tok.vocab_size(), 80);
  for (const auto& s : kText) EXPECT_EQ(tok.decode(tok.encode(s)), s);
  // frequent words become a single piece
  EXPECT_EQ(tok.encode_pieces("the"), (std::vector<std::string>{"\xe2\x96\x81the"}));
  EXPECT_LT(tok.encode("the newest").size(), std::string("the newest").size());
  // unseen characters map to <unk>
  const auto ids = tok.encode("the ZQ");
  EXPECT_EQ(std::count(ids.begin(), ids.end(), BpeTokenizer::kUnk), 2);
  // special tokens are skipped by decode
  std::vector<int32_t> with_special = {BpeTokenizer::kBos};
  for (int32_t id : tok.encode("low lower")) with_special.push_back(id);
  with_special.push_back(BpeTokenizer::kEos);
  with_special.push_back(BpeTokenizer::kPad);
  EXPECT_EQ(tok.decode(with_special), "low lower");
}

TEST(Bpe, SaveLoadReproducesEncoding) {
  const BpeTokenizer tok = BpeTokenizer::train(kText, {.vocab_size = 70, .min_frequency = 1});
  const auto path = fs::temp_directory_path() / ("kolo_bpe_" + std::to_string(::getpid()) + ".model");
  tok.save(path.string());
  const BpeTokenizer back = BpeTokenizer::load(path.string());
  EXPECT_EQ(back.vocab_size(), tok.vocab_size());
  for (const auto& s : kText) EXPECT_EQ(back.encode(s), tok.encode(s));
  // training is deterministic
  EXPECT_EQ(BpeTokenizer::train(kText, {.vocab_size = 70, .min_frequency = 1}).encode(kText[3]), tok.encode(kText[3]));
  fs::remove(path);
  const auto bad = temp_file("bad.model", "kolo-bpe 1\n2\na\nb\n1\n4 99\n");
  const std::string msg = error_of([&] { BpeTokenizer::load(bad.string()); });
  EXPECT_NE(msg.find(bad.string() + ":6: merge ids"), std::string::npos) << msg;
  fs::remove(bad);
}

TEST(Bpe, RealCorpusRoundTrip) {
  if (!fs::exists(kDingDeEnPath)) GTEST_SKIP() << "trans-de-en not installed";
  auto pairs = read_ding_sentences();
  pairs.resize(3000);
  std::vector<std::string> text;
  for (const auto& p : pairs) {
    text.push_back(p.src);
    text.push_back(p.tgt);
  }
  const BpeTokenizer tok = BpeTokenizer::train(text, {.vocab_size = 2000});
  EXPECT_EQ(tok.vocab_size(), 2000);
  int64_t chars = 0, ids = 0;
  for (const auto& s : text) {
    const auto enc = tok.encode(s);
    ASSERT_EQ(tok.decode(enc), s);
    chars += static_cast<int64_t>(s.size());
    ids += static_cast<int64_t>(enc.size());
  }
  EXPECT_LT(ids * 3, chars);  // real compression: more than 3 bytes per token on average
}

TEST(TokenBatching, RespectsBudgetAndBuckets) {
  const auto data = synthetic_token_pairs(500, 100, 1, 60, SyntheticTask::kRandom, 3);
  std::vector<int64_t> lengths;
  for (const auto& p : data) lengths.push_back(padded_length(p));
  const auto batches = plan_token_batches(lengths, 256, 0);
  int64_t samples = 0, prev_hi = 0;
  for (const auto& b : batches) {
    int64_t lo = 1 << 30, hi = 0;
    for (int64_t i : b) {
      lo = std::min(lo, lengths[i]);
      hi = std::max(hi, lengths[i]);
    }
    EXPECT_LE(hi * static_cast<int64_t>(b.size()), 256);
    EXPECT_GE(lo, prev_hi);  // bucketed: batches hold disjoint, increasing length ranges
    prev_hi = hi;
    samples += static_cast<int64_t>(b.size());
  }
  EXPECT_EQ(samples, 500);
  EXPECT_EQ(plan_token_batches({10, 300, 20}, 256, 0).size(), 1u);  // the over-long sample is left out
}

TEST(TokenBatching, TensorsAndMasks) {
  const std::vector<TokenPair> data = {{{5, 6, 7}, {8}}, {{9}, {10, 11}}};
  const TokenBatch b = make_token_batch(data, {0, 1}, TokenLoaderOptions{});
  EXPECT_EQ(b.src.shape(), (Shape{2, 4}));
  EXPECT_EQ(b.src.dtype(), DType::I64);
  EXPECT_EQ(b.src.to_vector<int64_t>(), (std::vector<int64_t>{5, 6, 7, 2, 9, 2, 0, 0}));
  EXPECT_EQ(b.src_mask.to_vector<float>(), (std::vector<float>{1, 1, 1, 1, 1, 1, 0, 0}));
  EXPECT_EQ(b.tgt_in.to_vector<int64_t>(), (std::vector<int64_t>{1, 8, 0, 1, 10, 11}));
  EXPECT_EQ(b.tgt_out.to_vector<int64_t>(), (std::vector<int64_t>{8, 2, 0, 10, 11, 2}));
  EXPECT_EQ(b.tgt_mask.to_vector<float>(), (std::vector<float>{1, 1, 0, 1, 1, 1}));
  EXPECT_EQ(b.src_tokens, 6);
  EXPECT_EQ(b.tgt_tokens, 5);
}

TEST(TokenLoader, ShardsCoverEachSampleOnceAndResume) {
  auto data = std::make_shared<std::vector<TokenPair>>(synthetic_token_pairs(300, 50, 2, 30, SyntheticTask::kReverse, 4));
  for (int size : {1, 2, 3}) {
    std::vector<int> seen(data->size(), 0);
    for (int rank = 0; rank < size; ++rank) {
      TokenLoaderOptions o;
      o.max_tokens = 128;
      o.shard = {rank, size, 11, true, ShardMode::kExact};
      TokenLoader loader(data, o);
      while (auto b = loader.next()) {
        EXPECT_LE(b->src.numel(), 128);
        EXPECT_LE(b->tgt_out.numel(), 128);
        for (int64_t id : b->sample_ids) ++seen[id];
      }
    }
    for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], 1) << "size " << size << " sample " << i;
  }
  TokenLoaderOptions o;
  o.max_tokens = 128;
  o.shard = {0, 2, 11, true, ShardMode::kEven};
  TokenLoader a(data, o), other(data, {.max_tokens = 128, .shard = {1, 2, 11, true, ShardMode::kEven}});
  EXPECT_EQ(a.batches_per_epoch(), other.batches_per_epoch());
  a.next();
  a.next();
  const LoaderState saved = a.state();
  std::vector<std::vector<int64_t>> rest;
  while (auto b = a.next()) rest.push_back(b->sample_ids);
  TokenLoader c(data, o);
  c.set_state(saved);
  std::vector<std::vector<int64_t>> resumed;
  while (auto b = c.next()) resumed.push_back(b->sample_ids);
  EXPECT_EQ(resumed, rest);
  EXPECT_EQ(c.state(), (LoaderState{1, 0}));
}

TEST(TokenLoader, SyntheticTasks) {
  const auto rev = synthetic_token_pairs(10, 20, 3, 5, SyntheticTask::kReverse, 1);
  for (const auto& p : rev) {
    EXPECT_EQ(std::vector<int32_t>(p.src.rbegin(), p.src.rend()), p.tgt);
    for (int32_t t : p.src) EXPECT_GE(t, BpeTokenizer::kNumSpecial);
  }
  EXPECT_EQ(synthetic_token_pairs(10, 20, 3, 5, SyntheticTask::kCopy, 1)[3].tgt, rev[3].src);
}

}  // namespace
}  // namespace kolo::data
