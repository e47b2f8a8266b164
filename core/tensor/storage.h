// A refcounted block of device memory shared by a tensor and all of its views.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include "core/device/device.h"

namespace kolo {

class Allocator;

class Storage {
 public:
  Storage(size_t nbytes, Device device);  // allocates from allocator_for(device)
  // Wraps memory owned elsewhere; `release` runs when the last reference goes.
  Storage(void* data, size_t nbytes, Device device, std::function<void(void*)> release);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  Allocator* allocator_ = nullptr;
  std::function<void(void*)> release_;
};

}  // namespace kolo
