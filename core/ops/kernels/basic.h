// Kernels every tensor needs: strided copy with dtype conversion, fill, random fill, row scatter-add.
#pragma once

#include <cstdint>

#include "core/ops/dispatch.h"
#include "core/ops/kernels/index_add_order.h"
#include "core/tensor/tensor.h"

namespace kolo {

// dst and src have equal shapes, any strides and dtypes, both on the kernel's device.
KOLO_DECLARE_KERNEL(copy, void(Tensor& dst, const Tensor& src));
KOLO_DECLARE_KERNEL(fill, void(Tensor& dst, double value));
// dst[i] = uniform [lo, hi) or normal(mean, std) from counters (seed, base + i), dst contiguous.
KOLO_DECLARE_KERNEL(fill_uniform, void(Tensor& dst, double lo, double hi, uint64_t seed, uint64_t base));
KOLO_DECLARE_KERNEL(fill_normal, void(Tensor& dst, double mean, double std, uint64_t seed, uint64_t base));
// dst[indices[i], ...] += values[i, ...]; dst contiguous [rows, ...], indices i64 [n], values [n, ...].
// Deterministic, the same bits on every device, in the order core/ops/kernels/index_add_order.h defines.
KOLO_DECLARE_KERNEL(index_add_rows, void(Tensor& dst, const Tensor& indices, const Tensor& values));

}  // namespace kolo
