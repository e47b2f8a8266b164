// The CUDA device backend: device discovery and selection, per-device caching allocators and main streams,
// a pinned host allocator for transfers, and copies between host and device memory.
#pragma once

#include "core/device/cuda/cuda_allocator.h"
#include "core/device/cuda/cuda_stream.h"
#include "core/device/device_backend.h"

namespace kolo {

// Number of visible CUDA devices (CUDA_VISIBLE_DEVICES applies); 0 — never an error — when there is no
// driver or no GPU, so CUDA builds run on machines without one.
int cuda_device_count();

// Throws kolo::Error when no device is visible.
DeviceBackend& cuda_device_backend();

// The calling thread's current CUDA device, and selecting one (range-checked).
int cuda_current_device();
void cuda_set_device(int device);

// The device's main stream: every thread's current stream unless a CudaStreamGuard says otherwise.
CudaStream& cuda_main_stream(int device);

CudaCachingAllocator& cuda_device_allocator(int device);
// Page-locked host memory for asynchronous transfers (shared by all devices).
CudaCachingAllocator& cuda_pinned_allocator();

}  // namespace kolo
