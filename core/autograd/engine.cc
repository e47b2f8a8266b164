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
    std::vector<Tensor> in_grads = n->backward(grads);
    if (!retain_graph) n->release_saved();
    KOLO_CHECK(in_grads.empty() || in_grads.size() == n->next.size(), "autograd: ", n->name(), " returned ",
               in_grads.size(), " gradients for ", n->next.size(), " inputs");
    for (size_t i = 0; i < n->next.size(); ++i) {
      const Edge& e = n->next[i];
      if (!e.valid()) continue;
      Node* m = e.node.get();
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
