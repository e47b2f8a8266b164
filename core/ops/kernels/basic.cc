// Kernel slots of the basic family; implementations register from ops/cpu and ops/cuda.
#include "core/ops/kernels/basic.h"

namespace kolo {

KOLO_DEFINE_KERNEL(copy);
KOLO_DEFINE_KERNEL(fill);
KOLO_DEFINE_KERNEL(fill_uniform);
KOLO_DEFINE_KERNEL(fill_normal);
KOLO_DEFINE_KERNEL(index_add_rows);

}  // namespace kolo
