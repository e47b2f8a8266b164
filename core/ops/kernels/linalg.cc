// Kernel slots of the linalg family.
#include "core/ops/kernels/linalg.h"

namespace kolo {
KOLO_DEFINE_KERNEL(gemm);
KOLO_DEFINE_KERNEL(linear_fwd);
KOLO_DEFINE_KERNEL(linear_bwd);
KOLO_DEFINE_KERNEL(ffn_fwd);
KOLO_DEFINE_KERNEL(ffn_bwd);
}  // namespace kolo
