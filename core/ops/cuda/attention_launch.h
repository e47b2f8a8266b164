// Launchers of the fused attention kernels (attention.cu) on raw strided buffers. Layouts follow
// core/ops/kernels/nn.h: q [B, H, Tq, Dh], k/v [B, H, Tk, Dh] with any element strides, an optional additive
// mask already expanded to [B, H, Tq, Tk] (stride-0 views), contiguous outputs. Head sizes up to 256.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/tensor/dtype.h"

namespace kolo::cuda {

// A 4-D operand: base pointer and element strides; data == nullptr means "absent" (the mask).
struct AttnOperand {
  const void* data = nullptr;
  int64_t stride[4] = {0, 0, 0, 0};
};

struct AttnShape {
  int64_t b, h, tq, tk, dh;
};

constexpr int64_t kAttentionMaxHead = 256;

// out [B, H, Tq, Dh] and lse [B, H, Tq] (statistics dtype) contiguous.
void launch_attention_fwd(DType t, const AttnShape& s, const AttnOperand& q, const AttnOperand& k,
                          const AttnOperand& v, const AttnOperand& mask, double scale, double dropout_p,
                          uint64_t seed, uint64_t base, void* out, void* lse, cudaStream_t stream);

// gq/gk/gv contiguous; grad_scores contiguous [B, H, Tq, Tk] or null; `delta` is device scratch of
// B*H*Tq statistics-dtype elements (rowsum(gout * out)).
void launch_attention_bwd(DType t, const AttnShape& s, const AttnOperand& gout, const AttnOperand& q,
                          const AttnOperand& k, const AttnOperand& v, const AttnOperand& mask, const void* out,
                          const void* lse, double scale, double dropout_p, uint64_t seed, uint64_t base, void* gq,
                          void* gk, void* gv, void* grad_scores, void* delta, cudaStream_t stream);

}  // namespace kolo::cuda
