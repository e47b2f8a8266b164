// ReLU f32 loops built for AVX-512, AVX2 and baseline x86-64 (see relu_f32.h).
#include "core/ops/cpu/relu_f32.h"

#include "core/ops/cpu/isa_clones.h"

namespace kolo::cpu {

KOLO_ISA_CLONES
void relu_f32(const float* __restrict x, float* __restrict out, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) out[i] = x[i] < 0.0f ? 0.0f : x[i];  // NaN passes through
}

KOLO_ISA_CLONES
void relu_backward_f32(const float* __restrict grad, const float* __restrict x, float* __restrict out, int64_t i0,
                       int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) out[i] = grad[i] * (x[i] > 0.0f ? 1.0f : 0.0f);
}

}  // namespace kolo::cpu
