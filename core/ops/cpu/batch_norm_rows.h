// The per-element loops of CPU batch norm (plain and fused with residual add + ReLU) for f32 activations:
// channels last over a block of rows [r0, r1) of C channels (bn_rows_*), NCHW over one plane of n elements of
// a single channel (bn_plane_*, per-channel constants as scalars).
//
// kolo is built for baseline x86-64 (SSE2), where these loops, with their double accumulators and ReLU masks,
// stay scalar or two lanes wide; batch_norm_rows.cc compiles them also for AVX2 and AVX-512 and the loader
// picks the widest the CPU has (core/ops/cpu/isa_clones.h). All batch-norm calls of one dtype and layout go through
// the same loops, so the fused ops stay equal to their unfused composite.
#pragma once

#include <cstdint>

namespace kolo::cpu {

// s[c] += x, sq[c] += x*x in double (training statistics).
void bn_rows_stats(const float* x, int64_t r0, int64_t r1, int64_t C, double* s, double* sq);

// y = x * scale + shift; with `relu`: y = relu(that [+ residual]) (residual may be null).
void bn_rows_apply(const float* x, const float* residual, bool relu, const float* scale, const float* shift,
                   int64_t r0, int64_t r1, int64_t C, float* y);

// Gradient statistics of g = dy (mask null) or g = dy * (mask > 0): a[c] += g, b[c] += g * (x - mean[c]) in
// double; when `g_out` is not null g is also stored there.
void bn_rows_grad_sums(const float* dy, const float* mask, const float* x, const float* mean, int64_t r0, int64_t r1,
                       int64_t C, double* a, double* b, float* g_out);

// dx = k[c] * (g - a[c] - (x - mean[c]) * b[c]) with g = dy or dy * (mask > 0).
void bn_rows_dx(const float* dy, const float* mask, const float* x, const float* mean, const float* a, const float* b,
                const float* k, int64_t r0, int64_t r1, int64_t C, float* dx);

// NCHW planes: the same four loops with one channel's constants.
void bn_plane_stats(const float* x, int64_t n, double& s, double& sq);
void bn_plane_apply(const float* x, const float* residual, bool relu, float scale, float shift, int64_t n, float* y);
void bn_plane_grad_sums(const float* dy, const float* mask, const float* x, float mean, int64_t n, double& a,
                        double& b, float* g_out);
void bn_plane_dx(const float* dy, const float* mask, const float* x, float mean, float a, float b, float k, int64_t n,
                 float* dx);

}  // namespace kolo::cpu
