// Launchers of the basic CUDA kernels (copy/convert, fill, random fill, row scatter-add) on raw buffers.
// Each enqueues on `stream` and checks the launch; nothing here synchronises.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/ops/cuda/strided_indexer.h"
#include "core/tensor/dtype.h"

namespace kolo::cuda {

// dst[off0(i)] = convert(src[off1(i)]) for i < n; ix operand 0 is dst, 1 is src.
void launch_copy(void* dst, DType dst_dtype, const void* src, DType src_dtype, const StridedIndexer<2>& ix,
                 int64_t n, cudaStream_t stream);
void launch_fill(void* dst, DType dtype, double value, const StridedIndexer<1>& ix, int64_t n, cudaStream_t stream);
// Contiguous dst; uniform in [a, b) or normal(mean a, std b) from Generator's counter hash (seed, base + i).
void launch_fill_random(void* dst, DType dtype, bool normal, double a, double b, uint64_t seed, uint64_t base,
                        int64_t n, cudaStream_t stream);
// dst[idx[i], :] += values[i, :], duplicates allowed, deterministically: the indices are sorted (stably) and
// each row's values summed in the order core/ops/kernels/index_add_order.h defines, in double (integers:
// int64), rounded once, as the CPU kernel does: the CPU's result bit for bit, the same on every rank (atomics
// summed duplicates in another order each run, and replicas installing the same gathered sparse gradient drifted
// apart). Rows outside [0, rows) are skipped and counted into *bad (device memory) so the caller can report them.
// `scratch`: index_add_rows_scratch_bytes(n, width) of device memory; n < 2^31.
size_t index_add_rows_scratch_bytes(int64_t n, int64_t width);
void launch_index_add_rows(void* dst, DType dtype, const int64_t* idx, const void* values, int64_t n,
                           int64_t width, int64_t rows, int* bad, void* scratch, cudaStream_t stream);

}  // namespace kolo::cuda
