// Weight initialisers: thin wrappers over the deterministic tensor generators.
#include "models/layers/init.h"

#include <cmath>

#include "core/ops/elementwise.h"

namespace kolo::models::init {

Tensor normal(const Shape& shape, double std, Generator& gen) {
  Tensor t = Tensor::randn(shape, gen);
  scale_(t, std);
  return t;
}

Tensor uniform(const Shape& shape, double bound, Generator& gen) {
  return Tensor::uniform(shape, -bound, bound, gen);
}

Tensor kaiming_normal_fan_out(const Shape& shape, int64_t fan_out, Generator& gen) {
  KOLO_CHECK(fan_out > 0, "kaiming_normal_fan_out: fan_out ", fan_out, " for shape ", shape_str(shape));
  return normal(shape, std::sqrt(2.0 / static_cast<double>(fan_out)), gen);
}

Tensor xavier_uniform(const Shape& shape, int64_t fan_in, int64_t fan_out, Generator& gen) {
  KOLO_CHECK(fan_in + fan_out > 0, "xavier_uniform: empty fans for shape ", shape_str(shape));
  return uniform(shape, std::sqrt(6.0 / static_cast<double>(fan_in + fan_out)), gen);
}

uint64_t fork_seed(Generator& gen) { return Generator::hash(gen.seed(), gen.reserve(1)); }

}  // namespace kolo::models::init
