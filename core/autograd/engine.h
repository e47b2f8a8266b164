// Reverse-mode execution of the autograd graph.
//
// backward(roots): counts, for every node reachable from the roots, how many gradient contributions it
// will receive; runs a node once all have arrived, choosing among ready nodes the most recently created
// (highest sequence number) so that gradients of the last layers become final first. A leaf's
// AccumulateGrad runs when every use of the leaf has contributed, and fires the leaf's grad-ready hooks
// right then — this is what lets the DistributedOptimizer start allreduce during backward.
// Each op node drops what it saved for its backward as soon as it has run (unless `retain_graph`), so the
// activations of the last layers are freed while the gradients of the first ones are being computed: the
// step's peak memory is not all saved activations plus the largest gradients.
#pragma once

#include <vector>

#include "core/tensor/tensor.h"

namespace kolo::autograd {

void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grad_roots, bool retain_graph = false);

}  // namespace kolo::autograd
