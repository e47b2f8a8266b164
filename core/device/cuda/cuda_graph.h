// CUDA Graphs: capture the work a function enqueues on a device's current stream once, then relaunch it as
// one graph, without the host cost of each kernel launch (ResNet-50's ~160 cuDNN calls and the kernels
// around them cost ~29 ms of host time per step, which a small batch cannot hide).
//
// What may be captured: work on the current stream whose shapes, pointers and scalar arguments are the same
// at every replay — a static training step after its warm-up (cuDNN and cuBLASLt choices cached, buffers
// allocated). capture() first gives the allocator's free cached segments back to the device, so the pool
// reuses the memory the warm-up steps held. Inputs are read from, and results written to, tensors that outlive the graph: refill them
// before replay(). Tensors allocated during capture come from a private pool of the device allocator (see
// cuda_allocator.h) that stays reserved for the graph, so the replayed kernels find their memory untouched.
// A host synchronisation during capture (item(), a copy to the host, synchronize()) cannot be captured: the
// call fails, capture is abandoned, and capture() throws kolo::Error; the stream stays usable.
#pragma once

#include <cuda_runtime_api.h>

#include <functional>

#include "core/device/graph.h"

namespace kolo {

class CudaGraph final : public Graph {
 public:
  explicit CudaGraph(int device);
  ~CudaGraph() override;
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Runs `fn` once under capture (its kernels are recorded, not executed) and instantiates the graph.
  // Throws kolo::Error if `fn` throws or the capture fails; a graph can be captured once.
  void capture(const std::function<void()>& fn) override;
  // Launches the captured work on the device's current stream, in order with the work before and after.
  void replay() override;
  bool captured() const { return exec_ != nullptr; }
  int device() const { return device_; }

 private:
  int device_;
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
  bool pool_open_ = false;
};

}  // namespace kolo
