// Per-device-type services the tensor engine needs: allocation, copies, streams and events.
// Resolved by one factory (device_backend.cc) with a fixed fallback: CPU is always there; CUDA when built
// with KOLO_WITH_CUDA and a device is present.
#pragma once

#include <cstddef>
#include <memory>

#include "core/device/allocator.h"
#include "core/device/graph.h"
#include "core/device/stream.h"

namespace kolo {

class DeviceBackend {
 public:
  virtual ~DeviceBackend() = default;
  virtual DeviceType type() const = 0;
  virtual int device_count() const = 0;
  virtual Allocator& allocator(int index) = 0;
  virtual Stream& current_stream(int index) = 0;
  // `timing`: the event can be passed to elapsed_ms (recording it costs more, so only profilers ask).
  virtual std::unique_ptr<Event> create_event(int index, bool timing = false) = 0;
  // Copies between this backend's memory and host or same-type memory, ordered on the current stream.
  virtual void copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) = 0;
  virtual void synchronize(int index) = 0;
  // A graph of device work on device `index`; the default (CPU) throws kolo::Error: it has no graphs.
  virtual std::unique_ptr<Graph> create_graph(int index);
};

// Throws kolo::Error when the device type was not built in or has no device.
DeviceBackend& device_backend(DeviceType type);
bool device_available(DeviceType type);

// The default device for training programs: CUDA when present, else CPU.
Device default_device();

}  // namespace kolo
