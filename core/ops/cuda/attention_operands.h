// 4-D tensors as the attention launchers' strided operands (attention_launch.h).
#pragma once

#include "core/ops/cuda/attention_launch.h"
#include "core/tensor/tensor.h"

namespace kolo::cuda {

// An undefined tensor (the absent mask) gives a null operand.
inline AttnOperand attn_operand(const Tensor& t) {
  AttnOperand o;
  if (!t.defined()) return o;
  o.data = t.data_ptr();
  for (int i = 0; i < 4; ++i) o.stride[i] = t.strides()[static_cast<size_t>(i)];
  return o;
}

inline AttnOutput attn_output(Tensor& t) {
  AttnOutput o;
  o.data = t.data_ptr();
  for (int i = 0; i < 4; ++i) o.stride[i] = t.strides()[static_cast<size_t>(i)];
  return o;
}

}  // namespace kolo::cuda
