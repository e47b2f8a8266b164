// Kernel slots of the elementwise/reduction family.
#include "core/ops/kernels/elementwise.h"

namespace kolo {

KOLO_DEFINE_KERNEL(unary);
KOLO_DEFINE_KERNEL(unary_backward);
KOLO_DEFINE_KERNEL(binary);
KOLO_DEFINE_KERNEL(affine);
KOLO_DEFINE_KERNEL(axpy);
KOLO_DEFINE_KERNEL(reduce_rows);
KOLO_DEFINE_KERNEL(reduce_mid);
KOLO_DEFINE_KERNEL(argmax_last);
KOLO_DEFINE_KERNEL(all_finite);

}  // namespace kolo
