// The accumulation-size arithmetic of sparse_report.h, with its working shown.
#include "optim/sparse_report.h"

#include <sstream>

#include "core/util/error.h"

namespace kolo {

SparseExchangeReport sparse_exchange_report(const SparseExchangeConfig& c) {
  KOLO_CHECK(c.vocab > 0 && c.dim > 0 && c.tokens_per_rank >= 0 && c.ranks > 0 && c.value_bytes > 0 && c.index_bytes >= 0,
             "sparse_exchange_report: invalid configuration vocab ", c.vocab, " dim ", c.dim, " tokens ",
             c.tokens_per_rank, " ranks ", c.ranks);
  SparseExchangeReport r;
  r.rows_per_rank = (c.tied_projection ? c.vocab : 0) + c.tokens_per_rank;
  r.gathered_rows = c.ranks * r.rows_per_rank;
  r.sparse_value_bytes = r.gathered_rows * c.dim * c.value_bytes;
  r.sparse_index_bytes = r.gathered_rows * c.index_bytes;
  r.sparse_bytes = r.sparse_value_bytes + r.sparse_index_bytes;
  r.dense_bytes = c.vocab * c.dim * c.value_bytes;
  r.ratio = static_cast<double>(r.sparse_bytes) / static_cast<double>(r.dense_bytes);
  std::ostringstream os;
  os << "rows per rank = " << (c.tied_projection ? std::to_string(c.vocab) + " (tied projection, all vocab rows) + " : "")
     << c.tokens_per_rank << " (lookups) = " << r.rows_per_rank << "\n"
     << "allgather rows = " << c.ranks << " ranks x " << r.rows_per_rank << " = " << r.gathered_rows << "\n"
     << "sparse path    = " << r.gathered_rows << " x (" << c.dim << " x " << c.value_bytes << " B values + "
     << c.index_bytes << " B index) = " << r.sparse_bytes << " B\n"
     << "dense path     = " << c.vocab << " x " << c.dim << " x " << c.value_bytes << " B = " << r.dense_bytes << " B\n"
     << "ratio          = " << r.ratio;
  r.computation = os.str();
  return r;
}

}  // namespace kolo
