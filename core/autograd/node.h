// Autograd graph: a Node per recorded op, edges to the nodes that produced its inputs.
//
// Protocol: an op computes its outputs, then (if any input requires grad and GradMode is on) records a
// Node whose `next` edges point to its inputs' producers (or their AccumulateGrad for leaves). backward()
// receives one gradient per output (missing ones are zero-filled before the call) and returns one per
// input (undefined = no gradient for that input).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor/tensor.h"

namespace kolo::autograd {

class Node;

struct Edge {
  std::shared_ptr<Node> node;
  uint32_t input_nr = 0;  // which of node's outputs this edge feeds
  bool valid() const { return node != nullptr; }
};

struct OutputMeta {
  Shape shape;
  DType dtype;
  Device device;
};

class Node {
 public:
  Node();
  virtual ~Node() = default;
  virtual std::vector<Tensor> backward(std::vector<Tensor>& grad_outputs) = 0;
  virtual std::string name() const = 0;
  // Frees what the node saved for its backward (after the backward ran, unless the graph is retained).
  virtual void release_saved() {}
  // Sums a gradient arriving for output `slot` into `buffer`; AccumulateGrad overrides for sparse policy.
  virtual void accumulate_input(Tensor& buffer, const Tensor& grad);
  // Whether backward_into may sum its gradient for input `input` into an earlier one in place (a GEMM or
  // convolution with beta = 1, a kernel that reads the earlier sum): one pass fewer over that gradient than
  // producing it alone and adding the two.
  virtual bool sums_into(size_t /*input*/) const { return false; }
  // backward, where `into[i]`, when defined, is input i's gradient so far (dense, contiguous, of input i's
  // shape, dtype and device, held by no one else): the node may add its own gradient for input i into that
  // tensor and return it as input i's gradient.
  virtual std::vector<Tensor> backward_into(std::vector<Tensor>& grad_outputs, std::vector<Tensor>& /*into*/) {
    return backward(grad_outputs);
  }
  // Whether backward_into may write its gradient for input `input` straight into `into[input]` when that is
  // a leaf's bound gradient slot (Tensor::set_grad_slot) holding nothing yet, and return it: the gradient is
  // then not copied into the slot afterwards. An input offers either sums (sums_into) or writes, never both,
  // so a node knows from the index what an `into` entry holds.
  virtual bool writes_into(size_t /*input*/) const { return false; }

  std::vector<Edge> next;
  std::vector<OutputMeta> outputs;  // to zero-fill gradients of unused outputs
  uint64_t sequence_nr;             // creation order: later nodes run first in backward
};

struct AutogradMeta {
  bool requires_grad = false;
  bool keep_sparse_grad = false;
  Tensor grad;
  Tensor grad_slot;  // see Tensor::set_grad_slot
  std::shared_ptr<Node> grad_fn;
  uint32_t output_nr = 0;
  std::weak_ptr<Node> grad_accumulator;
  std::vector<std::function<void(Tensor&)>> grad_ready_hooks;
};

// The sink for a leaf tensor's gradient.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf);
  std::vector<Tensor> backward(std::vector<Tensor>& grad_outputs) override;
  std::string name() const override { return "AccumulateGrad"; }
  void accumulate_input(Tensor& buffer, const Tensor& grad) override;
  // The leaf's bound gradient slot while the leaf has no gradient yet (a producer may write into it), else
  // undefined.
  Tensor empty_slot() const;

 private:
  std::weak_ptr<TensorImpl> leaf_;
};

// Node whose backward is a closure: how ops define forward and backward in one place.
class FunctionNode final : public Node {
 public:
  using BackwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& grad_outputs)>;
  // As BackwardFn, plus Node::backward_into's `into` (undefined entries where nothing is offered; for the
  // node's sum inputs an earlier gradient to add to, for its write inputs an empty slot to write into).
  using IntoFn =
      std::function<std::vector<Tensor>(const std::vector<Tensor>& grad_outputs, const std::vector<Tensor>& into)>;
  FunctionNode(std::string name, BackwardFn fn) : name_(std::move(name)), fn_(std::move(fn)) {}
  FunctionNode(std::string name, IntoFn fn, std::vector<size_t> sum_inputs, std::vector<size_t> write_inputs)
      : name_(std::move(name)),
        into_fn_(std::move(fn)),
        sum_inputs_(std::move(sum_inputs)),
        write_inputs_(std::move(write_inputs)) {}
  std::vector<Tensor> backward(std::vector<Tensor>& grad_outputs) override;
  std::vector<Tensor> backward_into(std::vector<Tensor>& grad_outputs, std::vector<Tensor>& into) override;
  bool sums_into(size_t input) const override;
  bool writes_into(size_t input) const override;
  std::string name() const override { return name_; }
  void release_saved() override {  // the closure holds the saved tensors
    fn_ = nullptr;
    into_fn_ = nullptr;
  }

 private:
  void check_saved() const;
  std::string name_;
  BackwardFn fn_;
  IntoFn into_fn_;
  std::vector<size_t> sum_inputs_, write_inputs_;
};

// The edge a gradient for `t` must flow into (its grad_fn, or the leaf's AccumulateGrad).
Edge gradient_edge(const Tensor& t);
bool any_requires_grad(const std::vector<Tensor>& inputs);

// Records `outputs` as produced from `inputs` by an op whose backward is `fn`. No-op when no input
// requires grad or GradMode is off. `fn` returns one gradient per input (undefined where not needed).
void record(const std::string& name, const std::vector<Tensor>& inputs, const std::vector<Tensor*>& outputs,
            FunctionNode::BackwardFn fn);
// As record, for a backward that can sum its gradients of `sum_inputs` into earlier ones and write those of
// `write_inputs` into leaves' empty gradient slots (Node::backward_into; the lists must not overlap).
void record_into(const std::string& name, const std::vector<Tensor>& inputs, const std::vector<Tensor*>& outputs,
                 std::vector<size_t> sum_inputs, std::vector<size_t> write_inputs, FunctionNode::IntoFn fn);
// Where a record_into backward makes a write input's gradient: the slot the engine offered (`offered`, its
// `into` entry), else a new tensor; undefined when the gradient is not needed.
Tensor write_target(bool needed, const Tensor& offered, const Shape& shape, DType dtype, Device device);

// Sum of two gradients with sparse handling: sparse+sparse concatenates rows, sparse+dense sums densely.
Tensor add_gradients(const Tensor& a, const Tensor& b);
// TensorFlow's rule for mixing: dense is converted to all-rows IndexedSlices and concatenated.
Tensor concat_as_sparse(const Tensor& a, const Tensor& b);

}  // namespace kolo::autograd
