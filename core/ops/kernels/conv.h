// Kernel slots of the convolutional family: conv2d forward / backward-data / backward-weights, batch norm
// forward / backward, 2-D pooling forward / backward. Ops (core/ops/conv.cc) resolve and validate shapes
// into ConvGeometry / PoolGeometry, allocate outputs, and call these slots; backends (ops/cpu with oneDNN or
// the im2col fallback, ops/cuda with cuDNN) register implementations. Every tensor handed to a kernel is
// contiguous in its declared layout (NCHW, or NHWC when `channels_last`), so a kernel only needs the
// geometry, the dtype and the data pointer; the shapes tell the rest.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "core/ops/dispatch.h"
#include "core/tensor/tensor.h"

namespace kolo {

// A fully resolved 2-D convolution. x: [n, c, h, w] (NHWC when channels_last), weight: [o, c/groups, kh, kw]
// (OHWI when channels_last), y: [n, o, oh, ow] (NHWC when channels_last).
struct ConvGeometry {
  int64_t n = 0, c = 0, h = 0, w = 0;
  int64_t o = 0, kh = 0, kw = 0;
  int64_t oh = 0, ow = 0;
  std::array<int64_t, 2> stride{1, 1}, padding{0, 0}, dilation{1, 1};
  int64_t groups = 1;
  bool channels_last = false;
  std::string str() const;  // for error messages and cache keys
};

enum class PoolKind : uint8_t { Max, Avg };  // Avg excludes padding from the divisor

struct PoolGeometry {
  int64_t n = 0, c = 0, h = 0, w = 0, oh = 0, ow = 0;
  std::array<int64_t, 2> kernel{2, 2}, stride{2, 2}, padding{0, 0};
  bool channels_last = false;
  std::string str() const;
};

// y = conv(x, weight) + bias; bias is [o] or undefined. y is preallocated with x's dtype.
KOLO_DECLARE_KERNEL(conv2d_fwd, void(const ConvGeometry& g, const Tensor& x, const Tensor& weight,
                                     const Tensor& bias, Tensor& y));
// dx = conv_transpose(dy, weight), or with `accumulate` dx += conv_transpose(dy, weight); dx preallocated.
KOLO_DECLARE_KERNEL(conv2d_bwd_data, void(const ConvGeometry& g, const Tensor& dy, const Tensor& weight,
                                          Tensor& dx, bool accumulate));
// dweight = correlation of x with dy; dbias (if defined) = sum of dy over n, oh, ow. Both overwritten.
KOLO_DECLARE_KERNEL(conv2d_bwd_weights, void(const ConvGeometry& g, const Tensor& x, const Tensor& dy,
                                             Tensor& dweight, Tensor& dbias));

// Batch norm over every dim but the channel one. weight/bias [c] in x's dtype (undefined = 1 / 0).
// save_mean/save_invstd are [c] outputs, f32 (f64 for f64 inputs, as cuDNN): the statistics used, for the
// backward.
// training: batch statistics, running_mean/var (f32 or x's dtype, may be undefined) updated in place with
// `momentum` and the unbiased variance; otherwise the running statistics normalise and are left alone.
KOLO_DECLARE_KERNEL(batch_norm_fwd,
                    void(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& running_mean,
                         Tensor& running_var, bool training, double momentum, double eps, bool channels_last,
                         Tensor& y, Tensor& save_mean, Tensor& save_invstd));
// Gradients of batch norm. `training` says whether the statistics were the batch's (then they depend on x)
// or constants (eval). dx, dweight, dbias are overwritten; any of them may be undefined (not needed).
KOLO_DECLARE_KERNEL(batch_norm_bwd,
                    void(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& save_mean,
                         const Tensor& save_invstd, bool training, bool channels_last, Tensor& dx,
                         Tensor& dweight, Tensor& dbias));

// y preallocated. workspace: whatever the backend needs to run the backward of max pooling (argmax indices
// on the CPU fallback, oneDNN's workspace); the kernel assigns it when `need_workspace` and may leave it
// undefined otherwise. cuDNN recomputes from x and y and leaves it undefined.
KOLO_DECLARE_KERNEL(pool2d_fwd, void(PoolKind kind, const PoolGeometry& g, const Tensor& x, Tensor& y,
                                     bool need_workspace, Tensor& workspace));
// dx (preallocated, overwritten) from dy, with x, y and the forward's workspace.
KOLO_DECLARE_KERNEL(pool2d_bwd, void(PoolKind kind, const PoolGeometry& g, const Tensor& x, const Tensor& y,
                                     const Tensor& dy, const Tensor& workspace, Tensor& dx));

}  // namespace kolo
