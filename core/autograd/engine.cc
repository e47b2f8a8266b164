// Dependency-counting executor over the autograd graph (see engine.h for the protocol).
#include "core/autograd/engine.h"

#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"

namespace kolo::autograd {

namespace {

struct ReadyOrder {
  bool operator()(const Node* a, const Node* b) const { return a->sequence_nr < b->sequence_nr; }
};

// A buffer an op may fill with input `input`'s gradient: dense, contiguous, of the input's shape, dtype and
// device. As is, that is a leaf's gradient slot a node may write into (the optimizer's flat buffer's view,
// holding no gradient yet).
bool slot_matches(const Tensor& t, const OutputMeta& input) {
  return !t.is_sparse() && t.is_contiguous() && t.shape() == input.shape && t.dtype() == input.dtype &&
         t.device() == input.device;
}

// A gradient buffer a node may sum into in place: as slot_matches, and referenced by the buffer alone (an op
// may return one gradient for several inputs, or a view of a tensor still in use).
bool offerable(const Tensor& t, const OutputMeta& input) {
  return t.defined() && slot_matches(t, input) && t.impl_ptr().use_count() == 1 && t.storage().use_count() == 1;
}

}  // namespace

void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grad_roots, bool retain_graph) {
  KOLO_CHECK(roots.size() == grad_roots.size(), "backward: ", roots.size(), " roots but ", grad_roots.size(),
             " gradients");
  std::vector<Edge> root_edges;
  for (size_t i = 0; i < roots.size(); ++i) {
    KOLO_CHECK(roots[i].requires_grad(), "backward: ", roots[i].describe(),
               " does not require grad (no recorded graph reaches it)");
    const Tensor& g = grad_roots[i];
    KOLO_CHECK(g.shape() == roots[i].shape(), "backward: gradient ", shape_str(g.shape()),
               " does not match ", roots[i].describe());
    root_edges.push_back(gradient_edge(roots[i]));
  }

  // Count the contributions each node will receive.
  std::unordered_map<Node*, int> deps;
  std::unordered_map<Node*, std::shared_ptr<Node>> keep;
  std::vector<Node*> stack;
  std::unordered_set<Node*> seen;
  for (auto& e : root_edges) {
    if (seen.insert(e.node.get()).second) {
      stack.push_back(e.node.get());
      keep[e.node.get()] = e.node;
    }
  }
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& e : n->next) {
      if (!e.valid()) continue;
      deps[e.node.get()]++;
      if (seen.insert(e.node.get()).second) {
        keep[e.node.get()] = e.node;
        stack.push_back(e.node.get());
      }
    }
  }

  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  auto buffer_for = [&](Node* n) -> std::vector<Tensor>& {
    auto& b = buffers[n];
    if (b.empty()) b.resize(std::max<size_t>(n->outputs.size(), 1));
    return b;
  };
  std::priority_queue<Node*, std::vector<Node*>, ReadyOrder> ready;
  for (size_t i = 0; i < roots.size(); ++i) {
    Node* n = root_edges[i].node.get();
    n->accumulate_input(buffer_for(n)[root_edges[i].input_nr], grad_roots[i]);
  }
  for (auto& e : root_edges)
    if (deps[e.node.get()] == 0 && seen.erase(e.node.get())) ready.push(e.node.get());

  NoGradGuard no_grad;  // gradients are not differentiated again
  while (!ready.empty()) {
    Node* n = ready.top();
    ready.pop();
    std::vector<Tensor> grads = std::move(buffer_for(n));
    buffers.erase(n);
    for (size_t i = 0; i < grads.size() && i < n->outputs.size(); ++i) {
      if (!grads[i].defined()) {
        const auto& m = n->outputs[i];
        grads[i] = Tensor::zeros(m.shape, m.dtype, m.device);
      }
    }
    // Inputs whose gradient so far the node can sum its own into: the buffer moves to the node, which returns
    // it (summed) or not (then it goes back and the two are added as usual). A leaf whose bound gradient slot
    // is still empty, and which gets this one contribution only, offers the slot to a node that writes into
    // it: the gradient is then made in place instead of copied there by AccumulateGrad.
    std::vector<Tensor> into;
    for (size_t i = 0; i < n->next.size(); ++i) {
      const Edge& e = n->next[i];
      if (!e.valid()) continue;
      if (auto* acc = dynamic_cast<AccumulateGrad*>(e.node.get())) {
        if (!n->writes_into(i) || deps[acc] != 1 || buffers.count(acc)) continue;
        Tensor slot = acc->empty_slot();
        if (!slot.defined() || !slot_matches(slot, acc->outputs[e.input_nr])) continue;
        into.resize(n->next.size());
        into[i] = std::move(slot);
        continue;
      }
      if (!n->sums_into(i)) continue;
      auto it = buffers.find(e.node.get());
      if (it == buffers.end() || !offerable(it->second[e.input_nr], e.node->outputs[e.input_nr])) continue;
      into.resize(n->next.size());
      into[i] = std::move(it->second[e.input_nr]);
      it->second[e.input_nr] = Tensor();
    }
    std::vector<Tensor> in_grads = into.empty() ? n->backward(grads) : n->backward_into(grads, into);
    if (!retain_graph) n->release_saved();
    KOLO_CHECK(in_grads.empty() || in_grads.size() == n->next.size(), "autograd: ", n->name(), " returned ",
               in_grads.size(), " gradients for ", n->next.size(), " inputs");
    for (size_t i = 0; i < n->next.size(); ++i) {
      const Edge& e = n->next[i];
      if (!e.valid()) continue;
      Node* m = e.node.get();
      const bool offered = i < into.size() && into[i].defined();
      const bool taken = offered && i < in_grads.size() && in_grads[i].defined() && in_grads[i].same(into[i]);
      // An input offers either a sum buffer or a slot (record_into keeps the lists apart): a slot not taken
      // stays with its leaf, a buffer goes back.
      if (offered && !taken && !n->writes_into(i))
        buffer_for(m)[e.input_nr] = std::move(into[i]);  // not taken: back to the buffer, added below
      else if (offered)
        into[i] = Tensor();  // taken (the returned gradient is the sum, or the filled slot), or a slot not used
      if (i < in_grads.size() && in_grads[i].defined()) {
        const auto& meta = m->outputs[e.input_nr];
        KOLO_CHECK(in_grads[i].shape() == meta.shape, "autograd: ", n->name(), " produced a gradient of shape ",
                   shape_str(in_grads[i].shape()), " for an input of shape ", shape_str(meta.shape));
        m->accumulate_input(buffer_for(m)[e.input_nr], in_grads[i]);
      }
      if (--deps[m] == 0) ready.push(m);
    }
  }
}

}  // namespace kolo::autograd
