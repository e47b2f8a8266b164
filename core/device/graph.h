// A captured sequence of device work replayed as one launch: the device-neutral face of CUDA graphs
// (core/device/cuda/cuda_graph.h), made by DeviceBackend::create_graph. Training programs use it to replay a
// static step without its per-kernel host cost; devices without graphs refuse to make one.
#pragma once

#include <functional>

namespace kolo {

class Graph {
 public:
  virtual ~Graph() = default;
  // Records (without running) the device work `fn` enqueues on the current stream; once per graph.
  virtual void capture(const std::function<void()>& fn) = 0;
  // Runs the recorded work on the current stream, in order with the work around it.
  virtual void replay() = 0;
};

}  // namespace kolo
