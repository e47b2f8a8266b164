// ReLU forward and backward over contiguous f32 ranges [i0, i1), compiled per vector ISA
// (core/ops/cpu/isa_clones.h): at baseline x86-64 GCC keeps their float selects scalar. Same results as the
// generic unary loops: relu(x) = x < 0 ? 0 : x (NaN passes, as PyTorch), d relu = g * (x > 0 ? 1 : 0).
#pragma once

#include <cstdint>

namespace kolo::cpu {

void relu_f32(const float* x, float* out, int64_t i0, int64_t i1);
void relu_backward_f32(const float* grad, const float* x, float* out, int64_t i0, int64_t i1);

}  // namespace kolo::cpu
