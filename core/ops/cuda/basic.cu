// CUDA kernels of the basic family: strided copy with dtype conversion, fill, counter-based random fill
// (bit-identical uniform draws to the CPU's Generator), and a deterministic row scatter-add.
#include "core/ops/cuda/basic_launch.h"

#include <cub/device/device_radix_sort.cuh>

#include "core/ops/cuda/map_kernels.cuh"
#include "core/ops/kernels/index_add_order.h"
#include "core/ops/cuda/random.cuh"

namespace kolo::cuda {

namespace {

template <typename D, typename S>
struct ConvertFn {
  __device__ D operator()(S v) const { return convert<D>(v); }
};

template <typename T, int W>
__global__ void fill_contig_kernel(T* __restrict__ out, T value, int64_t n) {
  const int64_t nvec = n / W;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  Vec<T, W> v;
#pragma unroll
  for (int j = 0; j < W; ++j) v.v[j] = value;
  for (int64_t i = tid; i < nvec; i += stride) reinterpret_cast<Vec<T, W>*>(out)[i] = v;
  for (int64_t i = nvec * W + tid; i < n; i += stride) out[i] = value;
}

template <typename T>
__global__ void fill_strided_kernel(T* out, T value, StridedIndexer<1> ix, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t off[1];
    strided_offsets(ix, i, off);
    out[off[0]] = value;
  }
}

template <typename T>
__global__ void fill_random_kernel(T* out, bool normal, double a, double b, uint64_t seed, uint64_t base, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const uint64_t h = counter_hash(seed, base + static_cast<uint64_t>(i));
    double v;
    if (normal) {
      const float u1 = (static_cast<float>(h >> 40) + 1.0f) * (1.0f / 16777217.0f);
      const float u2 = static_cast<float>((h >> 8) & 0xffffffu) * (1.0f / 16777216.0f);
      v = a + b * static_cast<double>(sqrtf(-2.0f * logf(u1)) * cosf(6.283185307179586f * u2));
    } else {
      v = a + (b - a) * static_cast<double>(static_cast<float>(h >> 40) * (1.0f / 16777216.0f));
    }
    out[i] = convert<T>(v);
  }
}

// Positions 0..n-1 (the sort's payload), and the out-of-range indices counted.
__global__ void positions_kernel(int64_t* pos, const int64_t* idx, int64_t n, int64_t rows, int* bad) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    pos[i] = i;
    if (idx[i] < 0 || idx[i] >= rows) atomicAdd(bad, 1);
  }
}

template <typename T>
using IndexAddSum = std::conditional_t<std::is_integral_v<T>, int64_t, double>;

// The summation order of core/ops/kernels/index_add_order.h. Over (block q, column c): where block q (sorted
// positions [q*B, (q+1)*B)) begins inside a row's run begun in an earlier block, the partial of that run's
// positions in block q, summed from zero in order.
template <typename T>
__global__ void block_partials_kernel(IndexAddSum<T>* partials, const int64_t* keys, const int64_t* order,
                                      const T* values, int64_t n, int64_t width, int64_t blocks) {
  const int64_t total = blocks * width;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const int64_t q = e / width, c = e - q * width, begin = q * kIndexAddBlock;
    if (q == 0 || keys[begin] != keys[begin - 1]) continue;
    const int64_t end = min(n, begin + kIndexAddBlock), r = keys[begin];
    IndexAddSum<T> partial = 0;
    for (int64_t j = begin; j < end && keys[j] == r; ++j)
      partial += convert<IndexAddSum<T>>(values[order[j] * width + c]);
    partials[e] = partial;
  }
}

// Over (sorted position i, column c), c fastest: the thread at the first position of a row's run adds, to the old
// value, the run's values in its first block in order, then the partials of the blocks the run continues into,
// and rounds once.
template <typename T>
__global__ void add_sorted_rows_kernel(T* dst, const int64_t* keys, const int64_t* order, const T* values,
                                       const IndexAddSum<T>* partials, int64_t n, int64_t width, int64_t rows) {
  const int64_t total = n * width;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const int64_t i = e / width, c = e - i * width;
    const int64_t r = keys[i];
    if ((i > 0 && keys[i - 1] == r) || r < 0 || r >= rows) continue;
    T* out = dst + r * width + c;
    IndexAddSum<T> acc = convert<IndexAddSum<T>>(*out);
    const int64_t first_end = min(n, (i / kIndexAddBlock + 1) * kIndexAddBlock);
    for (int64_t j = i; j < first_end && keys[j] == r; ++j)
      acc += convert<IndexAddSum<T>>(values[order[j] * width + c]);
    for (int64_t begin = first_end; begin < n && keys[begin] == r; begin += kIndexAddBlock)
      acc += partials[(begin / kIndexAddBlock) * width + c];
    *out = convert<T>(acc);
  }
}

// The scratch of launch_index_add_rows: sorted keys, positions before and after the sort, the blocks' partials
// (8-byte sums), the sort's own; `bytes` in all.
struct IndexAddScratch {
  int64_t *keys, *pos, *order;
  void* partials;
  void* sort_temp;
  size_t sort_bytes, bytes;
};

size_t align_up(size_t bytes) { return (bytes + 255) / 256 * 256; }

int64_t index_add_blocks(int64_t n) { return (n + kIndexAddBlock - 1) / kIndexAddBlock; }

// Lays the scratch out from `scratch` (null: only its size is wanted).
IndexAddScratch carve(void* scratch, int64_t n, int64_t width) {
  IndexAddScratch s{};
  const size_t column = align_up(static_cast<size_t>(n) * sizeof(int64_t));
  const size_t partials = align_up(static_cast<size_t>(index_add_blocks(n) * width) * sizeof(int64_t));
  auto* base = static_cast<char*>(scratch);
  s.keys = reinterpret_cast<int64_t*>(base);
  s.pos = reinterpret_cast<int64_t*>(base + column);
  s.order = reinterpret_cast<int64_t*>(base + 2 * column);
  s.partials = base + 3 * column;
  s.sort_temp = base + 3 * column + partials;
  KOLO_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, s.sort_bytes, static_cast<const int64_t*>(nullptr),
                                                  static_cast<int64_t*>(nullptr), static_cast<const int64_t*>(nullptr),
                                                  static_cast<int64_t*>(nullptr), static_cast<int>(n)));
  s.bytes = 3 * column + partials + s.sort_bytes;
  return s;
}

}  // namespace

void launch_copy(void* dst, DType dst_dtype, const void* src, DType src_dtype, const StridedIndexer<2>& ix,
                 int64_t n, cudaStream_t stream) {
  dispatch_device_dtype(dst_dtype, [&](auto dtag) {
    using D = decltype(dtag);
    dispatch_device_dtype(src_dtype, [&](auto stag) {
      using S = decltype(stag);
      map1(static_cast<D*>(dst), static_cast<const S*>(src), ix, n, ConvertFn<D, S>{}, stream);
    });
  });
}

void launch_fill(void* dst, DType dtype, double value, const StridedIndexer<1>& ix, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  const bool contiguous = all_unit_stride(ix);
  if (contiguous && value == 0.0) {  // all-zero bits in every dtype
    KOLO_CUDA_CHECK(cudaMemsetAsync(dst, 0, static_cast<size_t>(n) * dtype_size(dtype), stream));
    return;
  }
  dispatch_device_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* p = static_cast<T*>(dst);
    const T v = convert<T>(value);
    if (contiguous && aligned16(p)) {
      constexpr int W = vec_width<T>();
      fill_contig_kernel<T, W><<<grid_for((n + W - 1) / W, kMapThreads), kMapThreads, 0, stream>>>(p, v, n);
    } else {
      fill_strided_kernel<<<grid_for(n, kMapThreads), kMapThreads, 0, stream>>>(p, v, ix, n);
    }
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

void launch_fill_random(void* dst, DType dtype, bool normal, double a, double b, uint64_t seed, uint64_t base,
                        int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  dispatch_float_dtype(dtype, "random fill", [&](auto tag) {
    using T = decltype(tag);
    fill_random_kernel<<<grid_for(n, kMapThreads), kMapThreads, 0, stream>>>(static_cast<T*>(dst), normal, a, b,
                                                                             seed, base, n);
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

size_t index_add_rows_scratch_bytes(int64_t n, int64_t width) { return carve(nullptr, n, width).bytes; }

void launch_index_add_rows(void* dst, DType dtype, const int64_t* idx, const void* values, int64_t n,
                           int64_t width, int64_t rows, int* bad, void* scratch, cudaStream_t stream) {
  if (n == 0 || width == 0) return;
  IndexAddScratch s = carve(scratch, n, width);
  positions_kernel<<<grid_for(n, kMapThreads), kMapThreads, 0, stream>>>(s.pos, idx, n, rows, bad);
  KOLO_CUDA_CHECK_LAUNCH();
  // Radix sort is stable: a row's values keep their input order.
  KOLO_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(s.sort_temp, s.sort_bytes, idx, s.keys, s.pos, s.order,
                                                  static_cast<int>(n), 0, 64, stream));
  dispatch_device_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    auto* partials = static_cast<IndexAddSum<T>*>(s.partials);
    const int64_t blocks = index_add_blocks(n);
    if (blocks > 1) {
      block_partials_kernel<<<grid_for(blocks * width, kMapThreads), kMapThreads, 0, stream>>>(
          partials, s.keys, s.order, static_cast<const T*>(values), n, width, blocks);
      KOLO_CUDA_CHECK_LAUNCH();
    }
    add_sorted_rows_kernel<<<grid_for(n * width, kMapThreads), kMapThreads, 0, stream>>>(
        static_cast<T*>(dst), s.keys, s.order, static_cast<const T*>(values), partials, n, width, rows);
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

}  // namespace kolo::cuda
