// CPU embedding gather: copies rows of a (possibly strided) weight matrix, validating every id first.
#include <cstring>

#include "core/ops/cpu/nn_cpu_common.h"
#include "core/ops/kernels/nn.h"

namespace kolo {
namespace {

void cpu_embedding_gather(const Tensor& weight, const Tensor& indices, Tensor& out) {
  const int64_t v = weight.size(0), d = weight.size(1), n = indices.numel();
  const int64_t* idx = indices.data<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    KOLO_CHECK(idx[i] >= 0 && idx[i] < v, "embedding: id ", idx[i], " at position ", i, " out of range [0, ", v,
               ") for weight ", weight.describe());
  const int64_t rs = weight.strides()[0], cs = weight.strides()[1];
  const size_t esz = dtype_size(weight.dtype());
  const char* pw = static_cast<const char*>(weight.data_ptr());
  char* po = static_cast<char*>(out.data_ptr());
  // A byte copy serves every dtype; the gather never converts.
#pragma omp parallel for schedule(static) if (n * d > 32768)
  for (int64_t i = 0; i < n; ++i) {
    const char* src = pw + static_cast<size_t>(idx[i] * rs) * esz;
    char* dst = po + static_cast<size_t>(i * d) * esz;
    if (cs == 1) {
      std::memcpy(dst, src, static_cast<size_t>(d) * esz);
    } else {
      for (int64_t j = 0; j < d; ++j)
        std::memcpy(dst + static_cast<size_t>(j) * esz, src + static_cast<size_t>(j * cs) * esz, esz);
    }
  }
}

}  // namespace

KOLO_REGISTER_KERNEL(embedding_gather, CPU, cpu_embedding_gather);

}  // namespace kolo
