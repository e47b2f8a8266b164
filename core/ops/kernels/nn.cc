// Kernel slots of the sequence-model family; implementations register from ops/cpu and ops/cuda.
#include "core/ops/kernels/nn.h"

namespace kolo {

KOLO_DEFINE_KERNEL(softmax_fwd);
KOLO_DEFINE_KERNEL(softmax_bwd);
KOLO_DEFINE_KERNEL(cross_entropy_fwd);
KOLO_DEFINE_KERNEL(cross_entropy_bwd);
KOLO_DEFINE_KERNEL(layer_norm_fwd);
KOLO_DEFINE_KERNEL(layer_norm_bwd);
KOLO_DEFINE_KERNEL(dropout_apply);
KOLO_DEFINE_KERNEL(relu_dropout_backward);
KOLO_DEFINE_KERNEL(embedding_gather);
KOLO_DEFINE_KERNEL(attention_fwd);
KOLO_DEFINE_KERNEL(attention_bwd);

}  // namespace kolo
