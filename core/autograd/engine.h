// Reverse-mode execution of the autograd graph.
//
// backward(roots): counts, for every node reachable from the roots, how many gradient contributions it
// will receive; runs a node once all have arrived, choosing among ready nodes the most recently created
// (highest sequence number) so that gradients of the last layers become final first. A leaf's
// AccumulateGrad runs when every use of the leaf has contributed, and fires the leaf's grad-ready hooks
// right then — this is what lets the DistributedOptimizer start allreduce during backward.
#pragma once

#include <vector>

#include "core/tensor/tensor.h"

namespace kolo::autograd {

void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grad_roots);

}  // namespace kolo::autograd
