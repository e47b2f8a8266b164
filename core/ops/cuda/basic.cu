// CUDA kernels of the basic family: strided copy with dtype conversion, fill, counter-based random fill
// (bit-identical uniform draws to the CPU's Generator), and a deterministic row scatter-add.
#include "core/ops/cuda/basic_launch.h"

#include <cub/device/device_radix_sort.cuh>

#include "core/ops/cuda/map_kernels.cuh"
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

// Over (sorted position i, column c), c fastest: the thread at the first position of a row's run sums the old
// value and the run's values in their input order in double (integers: int64) and rounds once, as the CPU kernel.
template <typename T>
__global__ void add_sorted_rows_kernel(T* dst, const int64_t* keys, const int64_t* order, const T* values, int64_t n,
                                       int64_t width, int64_t rows) {
  const int64_t total = n * width;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const int64_t i = e / width, c = e - i * width;
    const int64_t r = keys[i];
    if ((i > 0 && keys[i - 1] == r) || r < 0 || r >= rows) continue;
    using Sum = std::conditional_t<std::is_integral_v<T>, int64_t, double>;
    T* out = dst + r * width + c;
    Sum acc = convert<Sum>(*out);
    for (int64_t j = i; j < n && keys[j] == r; ++j) acc += convert<Sum>(values[order[j] * width + c]);
    *out = convert<T>(acc);
  }
}

// The scratch of launch_index_add_rows: sorted keys, positions before and after the sort, the sort's own.
struct IndexAddScratch {
  int64_t *keys, *pos, *order;
  void* sort_temp;
  size_t sort_bytes;
};

size_t align_up(size_t bytes) { return (bytes + 255) / 256 * 256; }

IndexAddScratch carve(void* scratch, int64_t n) {
  IndexAddScratch s{};
  const size_t column = align_up(static_cast<size_t>(n) * sizeof(int64_t));
  auto* base = static_cast<char*>(scratch);
  s.keys = reinterpret_cast<int64_t*>(base);
  s.pos = reinterpret_cast<int64_t*>(base + column);
  s.order = reinterpret_cast<int64_t*>(base + 2 * column);
  s.sort_temp = base + 3 * column;
  KOLO_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, s.sort_bytes, static_cast<const int64_t*>(nullptr),
                                                  static_cast<int64_t*>(nullptr), static_cast<const int64_t*>(nullptr),
                                                  static_cast<int64_t*>(nullptr), static_cast<int>(n)));
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

size_t index_add_rows_scratch_bytes(int64_t n) {
  const IndexAddScratch s = carve(nullptr, n);
  return 3 * align_up(static_cast<size_t>(n) * sizeof(int64_t)) + s.sort_bytes;
}

void launch_index_add_rows(void* dst, DType dtype, const int64_t* idx, const void* values, int64_t n,
                           int64_t width, int64_t rows, int* bad, void* scratch, cudaStream_t stream) {
  if (n == 0 || width == 0) return;
  IndexAddScratch s = carve(scratch, n);
  positions_kernel<<<grid_for(n, kMapThreads), kMapThreads, 0, stream>>>(s.pos, idx, n, rows, bad);
  KOLO_CUDA_CHECK_LAUNCH();
  // Radix sort is stable: a row's values keep their input order.
  KOLO_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(s.sort_temp, s.sort_bytes, idx, s.keys, s.pos, s.order,
                                                  static_cast<int>(n), 0, 64, stream));
  dispatch_device_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    add_sorted_rows_kernel<<<grid_for(n * width, kMapThreads), kMapThreads, 0, stream>>>(
        static_cast<T*>(dst), s.keys, s.order, static_cast<const T*>(values), n, width, rows);
  });
  KOLO_CUDA_CHECK_LAUNCH();
}

}  // namespace kolo::cuda
