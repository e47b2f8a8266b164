// Kernel slots of the fused batch norm + residual add + ReLU.
#include "core/ops/kernels/batch_norm_act.h"

namespace kolo {

KOLO_DEFINE_KERNEL(batch_norm_act_fwd);
KOLO_DEFINE_KERNEL(batch_norm_act_bwd);
KOLO_DEFINE_KERNEL(batch_norm_dual_act_fwd);
KOLO_DEFINE_KERNEL(batch_norm_dual_act_bwd);

}  // namespace kolo
