// Convolutional-network ops: conv2d, batch norm, pooling. Layout is NCHW unless `channels_last` is set
// (then activations are NHWC and weights OHWI), as PyTorch's channels_last.
#pragma once

#include <array>

#include "core/tensor/tensor.h"

namespace kolo {

struct Conv2dOptions {
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 2> padding{0, 0};
  std::array<int64_t, 2> dilation{1, 1};
  int64_t groups = 1;
  bool channels_last = false;
};

// x [N, C, H, W] (or NHWC), w [O, C/groups, kh, kw] (or [O, kh, kw, C/groups]), bias [O] optional.
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dOptions& opt);

// Batch norm over all dims but the channel dim (1 for NCHW, last for NHWC). In training, normalises with the
// batch statistics and updates running_mean/var in place (momentum as PyTorch: new = (1-m)*old + m*batch,
// unbiased variance for the running estimate); in eval, uses the running statistics. weight/bias [C].
Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& running_mean,
                  Tensor& running_var, bool training, double momentum = 0.1, double eps = 1e-5,
                  bool channels_last = false);

// The argument checks of batch_norm, shared with the fused batch_norm_relu / batch_norm_add_relu
// (core/ops/batch_norm_act.h); errors name `op`.
void check_batch_norm_args(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias,
                           const Tensor& running_mean, const Tensor& running_var, bool training,
                           bool channels_last);

struct Pool2dOptions {
  std::array<int64_t, 2> kernel{2, 2};
  std::array<int64_t, 2> stride{2, 2};
  std::array<int64_t, 2> padding{0, 0};
  bool channels_last = false;
};

Tensor max_pool2d(const Tensor& x, const Pool2dOptions& opt);
Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& opt);  // padding excluded from the average
// Mean over H and W: [N, C, H, W] -> [N, C] (NHWC: [N, H, W, C] -> [N, C]).
Tensor global_avg_pool2d(const Tensor& x, bool channels_last = false);

}  // namespace kolo
