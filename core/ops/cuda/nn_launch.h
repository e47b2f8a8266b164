// Launchers of the CUDA kernels of the sequence-model ops (core/ops/kernels/nn.h) on raw contiguous buffers.
// `T` is the element dtype (f32, f64, bf16, f16); statistics buffers use nn_stats_dtype(T). Each launcher
// enqueues on `stream` (last) and checks the launch; nothing here synchronises.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/tensor/dtype.h"

namespace kolo::cuda {

// Softmax / log-softmax over rows of length n.
void launch_softmax_fwd(DType t, const void* x, void* y, int64_t rows, int64_t n, bool log, cudaStream_t stream);
void launch_softmax_bwd(DType t, const void* gy, const void* y, void* gx, int64_t rows, int64_t n, bool log,
                        cudaStream_t stream);

// Label-smoothed cross-entropy over logits [rows, c]. The forward writes lse, per-row losses and valid flags
// into `row_loss` (double [rows]) / `row_valid` (int [rows]), then the mean into the 0-d `loss`; targets
// outside [0, c) that are not ignore_index are counted into *bad.
void launch_cross_entropy_fwd(DType t, const void* logits, const int64_t* targets, int64_t rows, int64_t c,
                              double smoothing, int64_t ignore_index, void* loss, void* lse, double* row_loss,
                              int* row_valid, int* bad, cudaStream_t stream);
// `count` is device scratch for the number of non-ignored rows.
void launch_cross_entropy_bwd(DType t, const void* grad_loss, const void* logits, const int64_t* targets,
                              const void* lse, int64_t rows, int64_t c, double smoothing, int64_t ignore_index,
                              void* grad_logits, int* count, cudaStream_t stream);

// Layer norm over rows of length d; weight/bias may be null.
void launch_layer_norm_fwd(DType t, const void* x, const void* weight, const void* bias, double eps, int64_t rows,
                           int64_t d, void* y, void* mean, void* rstd, cudaStream_t stream);
// gw/gb may be null; `partial` is device scratch of layer_norm_bwd_partial_bytes(t, rows, d).
size_t layer_norm_bwd_partial_bytes(DType t, int64_t rows, int64_t d);
void launch_layer_norm_bwd(DType t, const void* gy, const void* x, const void* weight, const void* mean,
                           const void* rstd, int64_t rows, int64_t d, void* gx, void* gw, void* gb, void* partial,
                           cudaStream_t stream);

// y = residual + dropout(relu ? relu(x) : x), residual null for plain dropout.
void launch_dropout(DType t, const void* x, const void* residual, bool relu, double p, uint64_t seed, uint64_t base,
                    int64_t n, void* y, cudaStream_t stream);
// gx = y > 0 ? g / (1 - p) : 0, the backward of y = dropout(relu(x)).
void launch_relu_dropout_bwd(DType t, const void* g, const void* y, double p, int64_t n, void* gx, cudaStream_t stream);

// out[i, :] = weight[idx[i] * row_stride + j * col_stride]; element size `esz` bytes; bad ids counted in *bad.
void launch_embedding_gather(const void* weight, size_t esz, int64_t v, int64_t d, int64_t row_stride,
                             int64_t col_stride, const int64_t* idx, int64_t n, void* out, int* bad,
                             cudaStream_t stream);

}  // namespace kolo::cuda
