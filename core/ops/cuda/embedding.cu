// CUDA embedding gather: a warp per output row copies weight[id, :] (any strides), 16-byte words when the
// row is contiguous and aligned; ids outside [0, V) are counted for the caller to report and their rows
// zero-filled. The backward needs no kernel of its own: the gradient stays row-sparse (ids + rows) or is
// scattered by index_add_rows.
#include "core/device/cuda/cuda_check.h"
#include "core/ops/cuda/launch_config.h"
#include "core/ops/cuda/nn_launch.h"

namespace kolo::cuda {

namespace {

template <typename W>
__global__ void gather_kernel(const char* __restrict__ weight, size_t esz, int64_t v, int64_t d, int64_t rs,
                              int64_t cs, const int64_t* __restrict__ idx, int64_t n, char* __restrict__ out,
                              int* bad) {
  const int lane = threadIdx.x % 32;
  const int per_block = blockDim.x / 32;
  const int64_t row_bytes = d * static_cast<int64_t>(esz);
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * per_block + threadIdx.x / 32; i < n;
       i += static_cast<int64_t>(gridDim.x) * per_block) {
    const int64_t id = idx[i];
    char* dst = out + i * row_bytes;
    if (id < 0 || id >= v) {
      if (lane == 0) atomicAdd(bad, 1);
      for (int64_t b = lane; b < row_bytes; b += 32) dst[b] = 0;
      continue;
    }
    const char* src = weight + id * rs * static_cast<int64_t>(esz);
    if (cs == 1) {
      const int64_t words = row_bytes / static_cast<int64_t>(sizeof(W));
      for (int64_t k = lane; k < words; k += 32) reinterpret_cast<W*>(dst)[k] = reinterpret_cast<const W*>(src)[k];
    } else {
      for (int64_t j = lane; j < d; j += 32)
        for (size_t b = 0; b < esz; ++b) dst[j * esz + b] = src[j * cs * static_cast<int64_t>(esz) + b];
    }
  }
}

bool aligned_to(const void* p, size_t a) { return (reinterpret_cast<uintptr_t>(p) % a) == 0; }

}  // namespace

void launch_embedding_gather(const void* weight, size_t esz, int64_t v, int64_t d, int64_t row_stride,
                             int64_t col_stride, const int64_t* idx, int64_t n, void* out, int* bad,
                             cudaStream_t stream) {
  if (n == 0 || d == 0) return;
  const int threads = 256;
  const int grid = grid_for(n * 32, threads);
  const int64_t row_bytes = d * static_cast<int64_t>(esz);
  const int64_t src_step = row_stride * static_cast<int64_t>(esz);
  auto fits = [&](size_t a) {
    return row_bytes % static_cast<int64_t>(a) == 0 && src_step % static_cast<int64_t>(a) == 0 &&
           aligned_to(weight, a) && aligned_to(out, a);
  };
  const auto* w = static_cast<const char*>(weight);
  auto* o = static_cast<char*>(out);
  // The copy word is the widest the row layout allows (the rows are copied as raw bytes in every case).
  if (col_stride == 1 && fits(16)) {
    gather_kernel<uint4><<<grid, threads, 0, stream>>>(w, esz, v, d, row_stride, 1, idx, n, o, bad);
  } else if (col_stride == 1 && fits(4)) {
    gather_kernel<uint32_t><<<grid, threads, 0, stream>>>(w, esz, v, d, row_stride, 1, idx, n, o, bad);
  } else if (col_stride == 1 && fits(esz)) {
    // esz-sized words: 2-byte rows of an odd length, copied as single bytes.
    gather_kernel<uint8_t><<<grid, threads, 0, stream>>>(w, esz, v, d, row_stride, 1, idx, n, o, bad);
  } else {
    gather_kernel<uint8_t><<<grid, threads, 0, stream>>>(w, esz, v, d, row_stride, col_stride, idx, n, o, bad);
  }
  KOLO_CUDA_CHECK_LAUNCH();
}

}  // namespace kolo::cuda
