// Kernel slots of the convolutional family and the geometry printers used in errors and cache keys.
#include "core/ops/kernels/conv.h"

#include <sstream>

namespace kolo {

KOLO_DEFINE_KERNEL(conv2d_fwd);
KOLO_DEFINE_KERNEL(conv2d_bwd_data);
KOLO_DEFINE_KERNEL(conv2d_bwd_weights);
KOLO_DEFINE_KERNEL(batch_norm_fwd);
KOLO_DEFINE_KERNEL(batch_norm_bwd);
KOLO_DEFINE_KERNEL(pool2d_fwd);
KOLO_DEFINE_KERNEL(pool2d_bwd);

std::string ConvGeometry::str() const {
  std::ostringstream os;
  os << "x[" << n << "," << c << "," << h << "," << w << "] w[" << o << "," << c / groups << "," << kh << ","
     << kw << "] y[" << oh << "," << ow << "] s" << stride[0] << "x" << stride[1] << " p" << padding[0] << "x"
     << padding[1] << " d" << dilation[0] << "x" << dilation[1] << " g" << groups
     << (channels_last ? " nhwc" : " nchw");
  return os.str();
}

std::string PoolGeometry::str() const {
  std::ostringstream os;
  os << "x[" << n << "," << c << "," << h << "," << w << "] y[" << oh << "," << ow << "] k" << kernel[0] << "x"
     << kernel[1] << " s" << stride[0] << "x" << stride[1] << " p" << padding[0] << "x" << padding[1]
     << (channels_last ? " nhwc" : " nchw");
  return os.str();
}

}  // namespace kolo
