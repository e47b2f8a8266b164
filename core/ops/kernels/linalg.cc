// Kernel slot of the linalg family.
#include "core/ops/kernels/linalg.h"

namespace kolo {
KOLO_DEFINE_KERNEL(gemm);
}  // namespace kolo
