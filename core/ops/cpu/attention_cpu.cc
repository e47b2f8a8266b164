// CPU fused scaled dot-product attention. Work is split into (batch*head, query tile) tasks; each task
// holds K and V of its head plus a [tile, Tk] score block, so memory is O(Tk) per query row and the
// [Tq, Tk] probability matrix never exists. Products are Eigen GEMMs on float (double for f64) copies,
// which also makes any input strides and bf16 storage work through one path.
#include <Eigen/Core>
#include <cmath>
#include <limits>

#include "core/ops/cpu/nn_cpu_common.h"
#include "core/ops/kernels/nn.h"

namespace kolo {
namespace {

constexpr int64_t kQueryTile = 32;

template <typename A>
using Mat = Eigen::Matrix<A, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Element offsets of a 4-D strided operand.
struct View4 {
  const Shape& st;
  int64_t at(int64_t b, int64_t h, int64_t i, int64_t j) const { return b * st[0] + h * st[1] + i * st[2] + j * st[3]; }
};

// Rows [r0, r0 + n) of head (b, h) of a [B, H, T, Dh] operand into buf (n x Dh), converted to A.
template <typename T, typename A>
void load_rows(const Tensor& t, int64_t b, int64_t h, int64_t r0, int64_t n, Mat<A>& buf) {
  const int64_t dh = t.size(3);
  buf.resize(n, dh);
  const T* p = static_cast<const T*>(t.data_ptr());
  const View4 v{t.strides()};
  for (int64_t i = 0; i < n; ++i) {
    const T* row = p + v.at(b, h, r0 + i, 0);
    const int64_t cs = t.strides()[3];
    for (int64_t j = 0; j < dh; ++j) buf(i, j) = cpu::load_as<A>(row[j * cs]);
  }
}

// buf (n x Dh) into rows [r0, r0 + n) of head (b, h) of a strided [B, H, T, Dh] tensor.
template <typename T, typename A>
void store_rows(const Mat<A>& buf, Tensor& t, int64_t b, int64_t h, int64_t r0) {
  const int64_t dh = t.size(3), cs = t.strides()[3];
  T* p = static_cast<T*>(t.data_ptr());
  const View4 v{t.strides()};
  for (int64_t i = 0; i < buf.rows(); ++i) {
    T* row = p + v.at(b, h, r0 + i, 0);
    for (int64_t j = 0; j < dh; ++j) row[j * cs] = cpu::store_as<T>(buf(i, j));
  }
}

// How many leading keys some query row in [i0, i0 + rows) may attend to: keys after the last finite mask
// entry of the tile have probability 0 and are skipped, which halves the work under a causal mask.
template <typename T>
int64_t live_keys(const Tensor& mask, int64_t b, int64_t h, int64_t i0, int64_t rows, int64_t tk) {
  if (!mask.defined()) return tk;
  const T* pm = static_cast<const T*>(mask.data_ptr());
  const View4 mv{mask.strides()};
  const int64_t ms = mask.strides()[3];
  int64_t live = 0;
  for (int64_t i = 0; i < rows && live < tk; ++i) {
    const T* row = pm + mv.at(b, h, i0 + i, 0);
    for (int64_t j = tk - 1; j >= live; --j) {
      if (cpu::load_as<float>(row[j * ms]) != -std::numeric_limits<float>::infinity()) {
        live = j + 1;
        break;
      }
    }
  }
  return live;
}

// s = scale * q_tile k[:te]^T + mask for query rows [i0, i0 + s.rows()) of head (b, h), te = s.cols().
template <typename T, typename A>
void scores(const Mat<A>& qt, const Mat<A>& kb, const Tensor& mask, int64_t b, int64_t h, int64_t i0, A scale,
            Mat<A>& s) {
  s.noalias() = qt * kb.topRows(s.cols()).transpose();
  s *= scale;
  if (!mask.defined()) return;
  const T* pm = static_cast<const T*>(mask.data_ptr());
  const View4 mv{mask.strides()};
  const int64_t ms = mask.strides()[3];
  for (int64_t i = 0; i < s.rows(); ++i) {
    const T* row = pm + mv.at(b, h, i0 + i, 0);
    for (int64_t j = 0; j < s.cols(); ++j) s(i, j) += cpu::load_as<A>(row[j * ms]);
  }
}

// row <- exp(row - shift), exactly 0 where row is -inf (Eigen's vectorised exp clamps its argument, so
// exp(-inf) would come out as the smallest normal number and masked keys would leak into the result).
template <typename Row, typename A>
void masked_exp(Row&& row, A shift) {
  row = (row.array() == -std::numeric_limits<A>::infinity()).select(A(0), (row.array() - shift).exp()).matrix();
}

// keep(i, j) = 1 / (1 - p) or 0 for query rows starting at i0 of head bh, keys j < keep.cols() of tk
// (same counters as the forward and as dropout() on a contiguous [B, H, Tq, Tk] tensor).
template <typename A>
void dropout_factors(int64_t bh, int64_t tq, int64_t tk, int64_t i0, double p, uint64_t seed, uint64_t base,
                     Mat<A>& keep) {
  const A kept = p < 1.0 ? static_cast<A>(1.0 / (1.0 - p)) : A(0);
  const float pf = static_cast<float>(p);
  for (int64_t i = 0; i < keep.rows(); ++i) {
    const uint64_t row_base = base + static_cast<uint64_t>(((bh * tq) + i0 + i) * tk);
    for (int64_t j = 0; j < keep.cols(); ++j)
      keep(i, j) = Generator::uniform01(seed, row_base + static_cast<uint64_t>(j)) >= pf ? kept : A(0);
  }
}

void cpu_attention_fwd(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, double scale,
                       double dropout_p, uint64_t seed, uint64_t base, Tensor& out, Tensor& lse) {
  const int64_t nb = q.size(0), nh = q.size(1), tq = q.size(2), tk = k.size(2);
  const int64_t tiles = (tq + kQueryTile - 1) / kQueryTile;
  const int64_t tasks = nb * nh * tiles;
  cpu::dispatch_floating(q.dtype(), "scaled_dot_product_attention", [&](auto tag) {
    using T = decltype(tag);
    using A = cpu::AccOf<T>;
    A* pl = static_cast<A*>(lse.data_ptr());
    const A sc = static_cast<A>(scale);
#pragma omp parallel if (tasks > 1 && tq * tk * q.size(3) * nb * nh > 32768)
    {
      Mat<A> kb, vb, qt, s, keep, o;
      int64_t loaded = -1;  // head whose K/V sit in kb/vb: static scheduling gives a thread adjacent tiles
#pragma omp for schedule(static)
      for (int64_t task = 0; task < tasks; ++task) {
        const int64_t bh = task / tiles, i0 = (task % tiles) * kQueryTile;
        const int64_t b = bh / nh, h = bh % nh, rows = std::min(kQueryTile, tq - i0);
        if (loaded != bh) {
          load_rows<T, A>(k, b, h, 0, tk, kb);
          load_rows<T, A>(v, b, h, 0, tk, vb);
          loaded = bh;
        }
        const int64_t te = live_keys<T>(mask, b, h, i0, rows, tk);
        if (te == 0) {  // the whole tile is masked out
          for (int64_t i = 0; i < rows; ++i) pl[bh * tq + i0 + i] = -std::numeric_limits<A>::infinity();
          o.setZero(rows, vb.cols());
          store_rows<T, A>(o, out, b, h, i0);
          continue;
        }
        load_rows<T, A>(q, b, h, i0, rows, qt);
        s.resize(rows, te);
        scores<T, A>(qt, kb, mask, b, h, i0, sc, s);
        for (int64_t i = 0; i < rows; ++i) {
          const A m = s.row(i).maxCoeff();
          A* l = pl + bh * tq + i0 + i;
          if (m == -std::numeric_limits<A>::infinity()) {  // nothing to attend to: zero output
            s.row(i).setZero();
            *l = m;
            continue;
          }
          masked_exp(s.row(i), m);
          const A total = s.row(i).sum();
          s.row(i) /= total;
          *l = m + std::log(total);
        }
        if (dropout_p > 0.0) {
          keep.resize(rows, te);
          dropout_factors<A>(bh, tq, tk, i0, dropout_p, seed, base, keep);
          s.array() *= keep.array();
        }
        o.noalias() = s * vb.topRows(te);
        store_rows<T, A>(o, out, b, h, i0);
      }
    }
  });
}

void cpu_attention_bwd(const Tensor& gout, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                       const Tensor& out, const Tensor& lse, double scale, double dropout_p, uint64_t seed,
                       uint64_t base, Tensor& gq, Tensor& gk, Tensor& gv, Tensor& grad_scores) {
  const int64_t nb = q.size(0), nh = q.size(1), tq = q.size(2), tk = k.size(2);
  const int64_t heads = nb * nh;
  cpu::dispatch_floating(q.dtype(), "scaled_dot_product_attention backward", [&](auto tag) {
    using T = decltype(tag);
    using A = cpu::AccOf<T>;
    const A* pl = static_cast<const A*>(lse.data_ptr());
    const A sc = static_cast<A>(scale);
    T* pgs = grad_scores.defined() ? static_cast<T*>(grad_scores.data_ptr()) : nullptr;
    // dK and dV sum over every query row of a head, so a head is one task (no cross-thread reduction).
#pragma omp parallel for schedule(dynamic, 1) if (heads > 1 && tq * tk * q.size(3) * heads > 32768)
    for (int64_t bh = 0; bh < heads; ++bh) {
      const int64_t b = bh / nh, h = bh % nh;
      Mat<A> kb, vb, qt, go, s, keep, dp, dq;
      load_rows<T, A>(k, b, h, 0, tk, kb);
      load_rows<T, A>(v, b, h, 0, tk, vb);
      Mat<A> dk = Mat<A>::Zero(tk, kb.cols()), dv = Mat<A>::Zero(tk, vb.cols());
      for (int64_t i0 = 0; i0 < tq; i0 += kQueryTile) {
        const int64_t rows = std::min(kQueryTile, tq - i0);
        const int64_t te = live_keys<T>(mask, b, h, i0, rows, tk);
        if (pgs) {
          T* dst = pgs + (bh * tq + i0) * tk;
          for (int64_t i = 0; i < rows * tk; ++i) dst[i] = cpu::store_as<T>(A(0));
        }
        if (te == 0) {
          dq.setZero(rows, kb.cols());
          store_rows<T, A>(dq, gq, b, h, i0);
          continue;
        }
        load_rows<T, A>(q, b, h, i0, rows, qt);
        load_rows<T, A>(gout, b, h, i0, rows, go);
        s.resize(rows, te);
        scores<T, A>(qt, kb, mask, b, h, i0, sc, s);
        for (int64_t i = 0; i < rows; ++i) {
          const A l = pl[bh * tq + i0 + i];
          if (l == -std::numeric_limits<A>::infinity()) s.row(i).setZero();
          else masked_exp(s.row(i), l);
        }
        // s now holds P; with dropout the forward used P .* keep.
        dp.noalias() = go * vb.topRows(te).transpose();
        if (dropout_p > 0.0) {
          keep.resize(rows, te);
          dropout_factors<A>(bh, tq, tk, i0, dropout_p, seed, base, keep);
          dv.topRows(te).noalias() += (s.array() * keep.array()).matrix().transpose() * go;
          dp.array() *= keep.array();
        } else {
          dv.topRows(te).noalias() += s.transpose() * go;
        }
        // dS = P .* (dP - rowsum(P .* dP)).
        for (int64_t i = 0; i < rows; ++i) {
          const A d = s.row(i).dot(dp.row(i));
          s.row(i) = (s.row(i).array() * (dp.row(i).array() - d)).matrix();
        }
        if (pgs) {
          T* dst = pgs + (bh * tq + i0) * tk;
          for (int64_t i = 0; i < rows; ++i)
            for (int64_t j = 0; j < te; ++j) dst[i * tk + j] = cpu::store_as<T>(s(i, j));
        }
        dq.noalias() = (s * kb.topRows(te)) * sc;
        dk.topRows(te).noalias() += (s.transpose() * qt) * sc;
        store_rows<T, A>(dq, gq, b, h, i0);
      }
      store_rows<T, A>(dk, gk, b, h, 0);
      store_rows<T, A>(dv, gv, b, h, 0);
    }
  });
}

}  // namespace

KOLO_REGISTER_KERNEL(attention_fwd, CPU, cpu_attention_fwd);
KOLO_REGISTER_KERNEL(attention_bwd, CPU, cpu_attention_bwd);

}  // namespace kolo
