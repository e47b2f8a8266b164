// Graph recording, gradient edges and leaf accumulation.
#include "core/autograd/node.h"

#include <algorithm>

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "core/ops/shape_ops.h"

namespace kolo::autograd {

namespace {
std::atomic<uint64_t> g_sequence{0};

AutogradMeta& meta_of(const Tensor& t) {
  auto& impl = t.impl();
  if (!impl.autograd) impl.autograd = std::make_shared<AutogradMeta>();
  return *impl.autograd;
}
}  // namespace

Node::Node() : sequence_nr(g_sequence.fetch_add(1, std::memory_order_relaxed)) {}

void Node::accumulate_input(Tensor& buffer, const Tensor& grad) {
  buffer = buffer.defined() ? add_gradients(buffer, grad) : grad;
}

AccumulateGrad::AccumulateGrad(std::shared_ptr<TensorImpl> leaf) : leaf_(leaf) {
  outputs.push_back({leaf->shape, leaf->dtype, leaf->device});
}

void AccumulateGrad::accumulate_input(Tensor& buffer, const Tensor& grad) {
  auto leaf = leaf_.lock();
  const bool keep_sparse = leaf && leaf->autograd && leaf->autograd->keep_sparse_grad;
  if (!buffer.defined()) {
    buffer = grad;
  } else if (keep_sparse && (buffer.is_sparse() || grad.is_sparse())) {
    buffer = concat_as_sparse(buffer, grad);
  } else {
    buffer = add_gradients(buffer, grad);
  }
}

Tensor AccumulateGrad::empty_slot() const {
  auto leaf = leaf_.lock();
  if (!leaf || !leaf->autograd) return Tensor();
  const AutogradMeta& m = *leaf->autograd;
  return m.grad.defined() ? Tensor() : m.grad_slot;
}

std::vector<Tensor> AccumulateGrad::backward(std::vector<Tensor>& grads) {
  auto leaf = leaf_.lock();
  if (!leaf || !grads[0].defined()) return {};
  Tensor leaf_t(leaf);
  AutogradMeta& m = meta_of(leaf_t);
  Tensor g = grads[0];
  if (!g.is_sparse() && (g.dtype() != leaf->dtype)) g = g.to(leaf->dtype);
  if (!m.grad.defined() && !g.is_sparse() && m.grad_slot.defined() && m.grad_slot.shape() == g.shape()) {
    NoGradGuard ng;
    m.grad = m.grad_slot;
    if (!g.same(m.grad_slot)) m.grad.copy_(g);  // same: the producer wrote into the slot (Node::writes_into)
  } else if (!m.grad.defined()) {
    // The incoming buffer may alias a tensor the graph still holds; own a copy before accumulating into it.
    m.grad = g.is_sparse() ? g : g.contiguous().same(g) ? g.clone() : g.contiguous();
  } else if (m.keep_sparse_grad && (m.grad.is_sparse() || g.is_sparse())) {
    m.grad = concat_as_sparse(m.grad, g);
  } else if (m.grad.is_sparse() || g.is_sparse()) {
    m.grad = add_gradients(m.grad, g);
  } else {
    NoGradGuard ng;
    add_(m.grad, g);
  }
  m.grad.set_name(leaf->name.empty() ? "grad" : leaf->name + ".grad");
  for (auto& hook : m.grad_ready_hooks) hook(m.grad);
  return {};
}

Edge gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.impl().autograd) return {};
  AutogradMeta& m = *t.impl().autograd;
  if (m.grad_fn) return {m.grad_fn, m.output_nr};
  if (!m.requires_grad) return {};
  auto acc = m.grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t.impl_ptr());
    m.grad_accumulator = acc;
  }
  return {acc, 0};
}

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!GradMode::enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void FunctionNode::check_saved() const {
  KOLO_CHECK(fn_ != nullptr || into_fn_ != nullptr, "autograd: backward through ", name_,
             " a second time, but its saved tensors were freed by the first backward; pass retain_graph = true "
             "to the first backward() to go through the graph again");
}

std::vector<Tensor> FunctionNode::backward(std::vector<Tensor>& grad_outputs) {
  check_saved();
  if (fn_) return fn_(grad_outputs);
  return into_fn_(grad_outputs, std::vector<Tensor>(next.size()));
}

std::vector<Tensor> FunctionNode::backward_into(std::vector<Tensor>& grad_outputs, std::vector<Tensor>& into) {
  check_saved();
  if (fn_) return fn_(grad_outputs);
  return into_fn_(grad_outputs, into);
}

bool FunctionNode::sums_into(size_t input) const {
  return std::find(sum_inputs_.begin(), sum_inputs_.end(), input) != sum_inputs_.end();
}

bool FunctionNode::writes_into(size_t input) const {
  return std::find(write_inputs_.begin(), write_inputs_.end(), input) != write_inputs_.end();
}

namespace {

void connect(Node& node, const std::vector<Tensor>& inputs) {
  node.next.reserve(inputs.size());
  for (const Tensor& t : inputs) node.next.push_back(t.defined() && t.requires_grad() ? gradient_edge(t) : Edge{});
}

void attach(const std::shared_ptr<Node>& node, const std::vector<Tensor*>& outputs) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    Tensor& out = *outputs[i];
    node->outputs.push_back({out.shape(), out.dtype(), out.device()});
    AutogradMeta& m = meta_of(out);
    m.requires_grad = true;
    m.grad_fn = node;
    m.output_nr = static_cast<uint32_t>(i);
  }
}

}  // namespace

void record(const std::string& name, const std::vector<Tensor>& inputs, const std::vector<Tensor*>& outputs,
            FunctionNode::BackwardFn fn) {
  if (!any_requires_grad(inputs)) return;
  auto node = std::make_shared<FunctionNode>(name, std::move(fn));
  connect(*node, inputs);
  attach(node, outputs);
}

void record_into(const std::string& name, const std::vector<Tensor>& inputs, const std::vector<Tensor*>& outputs,
                 std::vector<size_t> sum_inputs, std::vector<size_t> write_inputs, FunctionNode::IntoFn fn) {
  for (size_t i : write_inputs)
    KOLO_CHECK(std::find(sum_inputs.begin(), sum_inputs.end(), i) == sum_inputs.end(), "record_into(", name,
               "): input ", i, " is both a sum and a write input");
  if (!any_requires_grad(inputs)) return;
  auto node = std::make_shared<FunctionNode>(name, std::move(fn), std::move(sum_inputs), std::move(write_inputs));
  connect(*node, inputs);
  attach(node, outputs);
}

Tensor write_target(bool needed, const Tensor& offered, const Shape& shape, DType dtype, Device device) {
  if (!needed) return Tensor();
  return offered.defined() ? offered : Tensor::empty(shape, dtype, device);
}

Tensor add_gradients(const Tensor& a, const Tensor& b) {
  NoGradGuard ng;
  if (a.is_sparse() && b.is_sparse()) {
    return Tensor::sparse_rows(cat({a.sparse_indices(), b.sparse_indices()}, 0),
                               cat({a.sparse_values(), b.sparse_values()}, 0), a.shape());
  }
  if (a.is_sparse() || b.is_sparse()) {
    const Tensor& s = a.is_sparse() ? a : b;
    const Tensor& d = a.is_sparse() ? b : a;
    Tensor out = d.contiguous().clone();
    index_add_rows_(out, s.sparse_indices(), s.sparse_values());
    return out;
  }
  return add(a, b);
}

Tensor concat_as_sparse(const Tensor& a, const Tensor& b) {
  NoGradGuard ng;
  auto as_rows = [](const Tensor& t) {
    if (t.is_sparse()) return t;
    Tensor idx = Tensor::arange(t.size(0), DType::I64, t.device());
    return Tensor::sparse_rows(idx, t.contiguous(), t.shape());
  };
  Tensor sa = as_rows(a), sb = as_rows(b);
  return Tensor::sparse_rows(cat({sa.sparse_indices(), sb.sparse_indices()}, 0),
                             cat({sa.sparse_values(), sb.sparse_values()}, 0), a.shape());
}

}  // namespace kolo::autograd
