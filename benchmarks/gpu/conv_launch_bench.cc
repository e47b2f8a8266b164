// Host cost of one convolution call on the GPU: ResNet-50's 3x3 conv at batch 1 (microseconds of GPU work),
// called back to back, so the time per call is the host path (descriptors, algorithm cache, cuDNN's own
// launch overhead). Compared with an elementwise op as the floor of a kernel-slot call.
// Usage: conv_launch_bench [calls]
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "core/autograd/grad_mode.h"
#include "core/device/cuda/cuda_backend.h"
#include "core/ops/conv.h"
#include "core/ops/elementwise.h"

int main(int argc, char** argv) {
  using namespace kolo;
  const int calls = argc > 1 ? std::atoi(argv[1]) : 2000;
  if (cuda_device_count() == 0) {
    std::printf("no CUDA device\n");
    return 0;
  }
  const Device gpu = Device::cuda(0);
  NoGradGuard ng;
  Generator gen(1);
  Tensor x = Tensor::uniform({1, 14, 14, 256}, -1.0, 1.0, gen, DType::BF16).to(gpu);
  Tensor w = Tensor::uniform({256, 3, 3, 256}, -0.1, 0.1, gen, DType::BF16).to(gpu);
  Conv2dOptions o;
  o.padding = {1, 1};
  o.channels_last = true;
  auto time_us = [&](auto&& fn) {
    for (int i = 0; i < 20; ++i) fn();
    cudaDeviceSynchronize();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) fn();
    const double host = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    cudaDeviceSynchronize();
    const double all = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    return std::make_pair(host / calls, all / calls);
  };
  const auto conv = time_us([&] { conv2d(x, w, Tensor(), o); });
  const auto elem = time_us([&] { add(x, x); });
  std::printf("conv2d fwd 1x14x14x256 k3 bf16: %.1f us/call host, %.1f us/call with the GPU drained\n", conv.first,
              conv.second);
  std::printf("add 1x14x14x256 bf16:           %.1f us/call host, %.1f us/call with the GPU drained\n", elem.first,
              elem.second);
  return 0;
}
