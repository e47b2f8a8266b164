// The accumulation-size arithmetic of the sparse gradient exchange.
#include <gtest/gtest.h>

#include "core/util/error.h"
#include "optim/sparse_report.h"

using namespace kolo;

TEST(SparseReport, TiedEmbeddingGrowsWithRanks) {
  SparseExchangeConfig c{.vocab = 1000, .dim = 16, .tokens_per_rank = 250, .ranks = 4};
  auto r = sparse_exchange_report(c);
  EXPECT_EQ(r.rows_per_rank, 1250);
  EXPECT_EQ(r.gathered_rows, 5000);
  EXPECT_EQ(r.sparse_value_bytes, 5000 * 16 * 4);
  EXPECT_EQ(r.sparse_index_bytes, 5000 * 8);
  EXPECT_EQ(r.dense_bytes, 1000 * 16 * 4);
  EXPECT_DOUBLE_EQ(r.ratio, (5000.0 * 72) / 64000.0);
  EXPECT_NE(r.computation.find("5000"), std::string::npos);
}

TEST(SparseReport, UntiedLookupOnly) {
  SparseExchangeConfig c{.vocab = 1000, .dim = 8, .tokens_per_rank = 10, .ranks = 2, .tied_projection = false,
                         .index_bytes = 0};
  auto r = sparse_exchange_report(c);
  EXPECT_EQ(r.rows_per_rank, 10);
  EXPECT_DOUBLE_EQ(r.ratio, 20.0 / 1000.0);
  EXPECT_THROW(sparse_exchange_report(SparseExchangeConfig{}), Error);
}

TEST(SparseReport, TransformerBigAt64RanksIsTensOfTimes) {
  // 32k shared vocabulary x 1024, tied with the output projection; 4096 source + 4096 target tokens per rank.
  SparseExchangeConfig c{.vocab = 32768, .dim = 1024, .tokens_per_rank = 8192, .ranks = 64};
  auto r = sparse_exchange_report(c);
  EXPECT_EQ(r.gathered_rows, 64 * (32768 + 8192));
  EXPECT_GT(r.ratio, 70.0);
  EXPECT_LT(r.ratio, 90.0);
}
