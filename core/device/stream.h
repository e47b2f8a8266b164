// Streams and events: ordered queues of device work. CPU work is synchronous, so its stream is trivial;
// the CUDA backend wraps cudaStream_t / cudaEvent_t behind the same interface.
#pragma once

#include <memory>

#include "core/device/device.h"

namespace kolo {

class Stream {
 public:
  virtual ~Stream() = default;
  virtual Device device() const = 0;
  virtual void synchronize() = 0;
  virtual void* native() const = 0;  // cudaStream_t on CUDA, nullptr on CPU
};

class Event {
 public:
  virtual ~Event() = default;
  virtual void record(Stream& stream) = 0;
  virtual void block(Stream& stream) = 0;  // make `stream` wait for this event without a host sync
  virtual bool query() = 0;               // true once the recorded work has completed
  virtual void synchronize() = 0;
  // Milliseconds between `start`'s recording and this event's, both completed and created with timing on.
  virtual double elapsed_ms(const Event& start) const = 0;
};

}  // namespace kolo
