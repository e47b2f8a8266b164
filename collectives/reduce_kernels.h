// Host reduction, scaling and dtype-conversion loops shared by the host backends (MPI user ops, loopback),
// wire compression and the fusion buffer. bf16/f16 are always computed in f32.
#pragma once

#include <cstdint>

#include "collectives/types.h"
#include "core/tensor/dtype.h"

namespace kolo::coll {

// acc[i] = acc[i] (op) in[i]. `op` must not be Average (that is a Sum plus a scale).
void reduce_into(void* acc, const void* in, int64_t count, DType dtype, ReduceOp op);
// buf[i] *= factor for floating dtypes; for integer dtypes factor must be 1 (checked by the caller).
void scale_buffer(void* buf, int64_t count, DType dtype, double factor);
// Integer average: buf[i] /= divisor, truncating toward zero as C++ integer division does.
void divide_buffer(void* buf, int64_t count, DType dtype, int64_t divisor);
// dst[i] = (dst_type)(src[i] * scale); src and dst may not overlap unless the types have equal size.
void convert_buffer(const void* src, DType src_type, void* dst, DType dst_type, int64_t count, double scale);

}  // namespace kolo::coll
