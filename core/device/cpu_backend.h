// The CPU device backend: caching pool allocator, synchronous stream, memcpy.
#pragma once

#include "core/device/device_backend.h"

namespace kolo {

DeviceBackend& cpu_device_backend();

}  // namespace kolo
