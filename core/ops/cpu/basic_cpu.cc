// CPU implementations of the basic kernels (copy/convert, fill, random fill, row scatter-add).
#include <algorithm>
#include <cstring>
#include <numeric>
#include <type_traits>
#include <vector>

#include "core/ops/cpu/strided.h"
#include "core/ops/kernels/basic.h"

namespace kolo {
namespace {

template <typename D, typename S>
inline D convert(S v) {
  if constexpr (std::is_same_v<D, bf16> || std::is_same_v<D, f16>) {
    return D(static_cast<float>(v));
  } else if constexpr (std::is_same_v<S, bf16> || std::is_same_v<S, f16>) {
    return static_cast<D>(static_cast<float>(v));
  } else {
    return static_cast<D>(v);
  }
}

void cpu_copy(Tensor& dst, const Tensor& src) {
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {
    std::memmove(dst.data_ptr(), src.data_ptr(), dst.nbytes());
    return;
  }
  dispatch_dtype(dst.dtype(), [&](auto dtag) {
    using D = decltype(dtag);
    dispatch_dtype(src.dtype(), [&](auto stag) {
      using S = decltype(stag);
      D* d = static_cast<D*>(dst.data_ptr());
      const S* s = static_cast<const S*>(src.data_ptr());
      cpu::for_each_row(dst.shape(), dst.strides(), src.strides(),
                   [&](int64_t od, int64_t os, int64_t n, int64_t sd, int64_t ss) {
                     D* dp = d + od;
                     const S* sp = s + os;
                     if (sd == 1 && ss == 1) {
                       for (int64_t i = 0; i < n; ++i) dp[i] = convert<D>(sp[i]);
                     } else {
                       for (int64_t i = 0; i < n; ++i) dp[i * sd] = convert<D>(sp[i * ss]);
                     }
                   });
    });
  });
}

void cpu_fill(Tensor& dst, double value) {
  dispatch_dtype(dst.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T v = convert<T>(value);
    T* d = static_cast<T*>(dst.data_ptr());
    cpu::for_each_row(dst.shape(), dst.strides(), dst.strides(),
                 [&](int64_t od, int64_t, int64_t n, int64_t sd, int64_t) {
                   for (int64_t i = 0; i < n; ++i) d[od + i * sd] = v;
                 });
  });
}

template <typename Gen>
void fill_random(Tensor& dst, Gen&& gen) {
  KOLO_CHECK(dst.is_contiguous(), "random fill needs a contiguous tensor, got ", dst.describe());
  KOLO_CHECK(is_floating(dst.dtype()), "random fill of non-floating tensor ", dst.describe());
  const int64_t n = dst.numel();
  dispatch_dtype(dst.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* d = static_cast<T*>(dst.data_ptr());
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) d[i] = convert<T>(gen(static_cast<uint64_t>(i)));
  });
}

void cpu_fill_uniform(Tensor& dst, double lo, double hi, uint64_t seed, uint64_t base) {
  fill_random(dst, [&](uint64_t i) { return lo + (hi - lo) * Generator::uniform01(seed, base + i); });
}

void cpu_fill_normal(Tensor& dst, double mean, double std, uint64_t seed, uint64_t base) {
  fill_random(dst, [&](uint64_t i) { return mean + std * Generator::normal(seed, base + i); });
}

void cpu_index_add_rows(Tensor& dst, const Tensor& indices, const Tensor& values) {
  KOLO_CHECK(dst.is_contiguous() && values.is_contiguous() && indices.is_contiguous(),
             "index_add_rows: operands must be contiguous");
  KOLO_CHECK(dst.dtype() == values.dtype(), "index_add_rows: dtype ", dtype_name(dst.dtype()), " vs ",
             dtype_name(values.dtype()));
  const int64_t rows = dst.dim() ? dst.size(0) : 1;
  const int64_t width = rows ? dst.numel() / rows : 0;
  const int64_t n = indices.numel();
  const int64_t* idx = indices.data<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    KOLO_CHECK(idx[i] >= 0 && idx[i] < rows, "index_add_rows: index ", idx[i], " out of range [0, ", rows,
               ") for ", dst.describe());
  // Positions grouped by row, each row's in input order (a stable sort), summed in the order index_add_order.h
  // defines (blocks of kIndexAddBlock sorted positions) in double (integers: int64) onto the old value and rounded
  // once: a bf16 embedding row looked up a thousand times keeps its gradient, and the CUDA kernel gives the same
  // bits.
  std::vector<int64_t> order(n), runs;
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [idx](int64_t a, int64_t b) { return idx[a] < idx[b]; });
  for (int64_t i = 0; i < n; ++i)
    if (i == 0 || idx[order[i]] != idx[order[i - 1]]) runs.push_back(i);
  runs.push_back(n);
  dispatch_dtype(dst.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using Sum = std::conditional_t<std::is_integral_v<T>, int64_t, double>;
    T* d = static_cast<T*>(dst.data_ptr());
    const T* v = static_cast<const T*>(values.data_ptr());
    const int64_t num_runs = static_cast<int64_t>(runs.size()) - 1;
    // Tasks of (row run, 64 columns): a row looked up thousands of times (a padding id) is still split across
    // threads. Each element's order is unchanged.
    constexpr int64_t kCols = 64;
    const int64_t col_blocks = (width + kCols - 1) / kCols;
#pragma omp parallel for schedule(dynamic, 16) if (n * width > 65536)
    for (int64_t task = 0; task < num_runs * col_blocks; ++task) {
      const int64_t r = task / col_blocks, c0 = task % col_blocks * kCols, cols = std::min(kCols, width - c0);
      Sum acc[kCols], partial[kCols];
      T* row = d + idx[order[runs[r]]] * width + c0;
      const int64_t begin = runs[r], end = runs[r + 1];
      for (int64_t c = 0; c < cols; ++c) acc[c] = convert<Sum>(row[c]);
      const int64_t first_end = std::min(end, (begin / kIndexAddBlock + 1) * kIndexAddBlock);
      for (int64_t j = begin; j < first_end; ++j) {
        const T* src = v + order[j] * width + c0;
        for (int64_t c = 0; c < cols; ++c) acc[c] += convert<Sum>(src[c]);
      }
      for (int64_t block = first_end; block < end; block += kIndexAddBlock) {
        std::fill(partial, partial + cols, Sum(0));
        for (int64_t j = block; j < std::min(end, block + kIndexAddBlock); ++j) {
          const T* src = v + order[j] * width + c0;
          for (int64_t c = 0; c < cols; ++c) partial[c] += convert<Sum>(src[c]);
        }
        for (int64_t c = 0; c < cols; ++c) acc[c] += partial[c];
      }
      for (int64_t c = 0; c < cols; ++c) row[c] = convert<T>(acc[c]);
    }
  });
}

}  // namespace

KOLO_REGISTER_KERNEL(copy, CPU, cpu_copy);
KOLO_REGISTER_KERNEL(fill, CPU, cpu_fill);
KOLO_REGISTER_KERNEL(fill_uniform, CPU, cpu_fill_uniform);
KOLO_REGISTER_KERNEL(fill_normal, CPU, cpu_fill_normal);
KOLO_REGISTER_KERNEL(index_add_rows, CPU, cpu_index_add_rows);

}  // namespace kolo
