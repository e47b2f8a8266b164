// Accumulation size of a row-sparse gradient exchange: TensorFlow/Horovod's default path (allgather the
// IndexedSlices of every rank and accumulate the concatenation) versus sparse_as_dense (densify locally,
// allreduce one dense tensor).
//
// Model of the default path: each rank's gradient for an embedding of [vocab, dim] holds `tokens_per_rank`
// looked-up rows; when the embedding is tied with the output projection, TensorFlow turns the projection's
// dense gradient into IndexedSlices of all `vocab` rows and concatenates it with the lookups, so a rank
// contributes vocab + tokens rows. The allgather then concatenates ranks x (vocab + tokens) rows (values
// and indices) on every rank; sparse_as_dense accumulates vocab x dim values, independent of rank count.
#pragma once

#include <cstdint>
#include <string>

namespace kolo {

struct SparseExchangeConfig {
  int64_t vocab = 0;            // rows of the embedding matrix
  int64_t dim = 0;              // columns (d_model)
  int64_t tokens_per_rank = 0;  // rows looked up per rank per step (all uses: source + target inputs)
  int64_t ranks = 1;
  bool tied_projection = true;  // the embedding is also the output projection (dense gradient)
  int64_t value_bytes = 4;      // f32
  int64_t index_bytes = 8;      // i64 indices (TensorFlow uses int64 for IndexedSlices here)
};

struct SparseExchangeReport {
  int64_t rows_per_rank = 0;     // rows in one rank's IndexedSlices
  int64_t gathered_rows = 0;     // rows after the allgather (ranks * rows_per_rank)
  int64_t sparse_value_bytes = 0;
  int64_t sparse_index_bytes = 0;
  int64_t sparse_bytes = 0;      // values + indices accumulated by the default path
  int64_t dense_bytes = 0;       // vocab * dim values: what sparse_as_dense accumulates
  double ratio = 0;              // sparse_bytes / dense_bytes
  std::string computation;       // the arithmetic written out, for reports
};

SparseExchangeReport sparse_exchange_report(const SparseExchangeConfig& cfg);

}  // namespace kolo
