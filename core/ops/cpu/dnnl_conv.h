// oneDNN implementations of the convolution and pooling kernels (core/ops/kernels/conv.h). Each returns
// false when it does not handle the call (dtype other than f32/bf16, or a max-pool backward without a
// oneDNN workspace), and the caller falls back to the portable loops. bf16 runs natively where oneDNN has a
// bf16 implementation on this CPU and is otherwise computed in f32 and rounded. Only built with
// KOLO_WITH_DNNL.
#pragma once

#include "core/ops/kernels/conv.h"

namespace kolo::cpu {

bool dnnl_conv_fwd(const ConvGeometry& g, const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y);
bool dnnl_conv_bwd_data(const ConvGeometry& g, const Tensor& dy, const Tensor& w, Tensor& dx);
bool dnnl_conv_bwd_weights(const ConvGeometry& g, const Tensor& x, const Tensor& dy, Tensor& dw, Tensor& db);

bool dnnl_pool_fwd(PoolKind kind, const PoolGeometry& g, const Tensor& x, Tensor& y, bool need_workspace,
                   Tensor& workspace);
bool dnnl_pool_bwd(PoolKind kind, const PoolGeometry& g, const Tensor& dy, const Tensor& workspace, Tensor& dx);

}  // namespace kolo::cpu
