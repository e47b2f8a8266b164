// ResNet-50 training-step throughput on one GPU (synthetic data, as tf_cnn_benchmarks): forward, label
// cross-entropy, backward and a plain SGD update through models/resnet.h. Prints images/sec lines.
// Usage: resnet_bench [batch] [bf16|f32] [nhwc|nchw] [steps] [eager|graph]
// graph: after the warm-up, one step is captured as a CUDA graph (core/device/cuda/cuda_graph.h) and the
// timed steps replay it, which removes the host's per-kernel launch cost.
// KOLO_PROFILE_KERNELS=N: afterwards, N more steps under KernelProfiler, printed as a per-kernel table.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/autograd/grad_mode.h"
#include "core/device/cuda/cuda_backend.h"
#include "core/device/cuda/cuda_graph.h"
#include "core/device/device_backend.h"
#include "core/ops/kernel_profiler.h"
#include "core/ops/elementwise.h"
#include "core/ops/nn.h"
#include "models/resnet.h"

int main(int argc, char** argv) {
  using namespace kolo;
  const int64_t batch = argc > 1 ? std::atoll(argv[1]) : 64;
  const bool bf16 = argc > 2 ? std::string(argv[2]) == "bf16" : true;
  const bool nhwc = argc > 3 ? std::string(argv[3]) == "nhwc" : true;
  const int steps = argc > 4 ? std::atoi(argv[4]) : 20;
  const bool use_graph = argc > 5 && std::string(argv[5]) == "graph";
  const int warm = 5;
  if (cuda_device_count() == 0) {
    std::printf("no CUDA device\n");
    return 0;
  }
  const Device gpu = Device::cuda(0);
  models::ResNetConfig cfg = models::resnet_config(50);
  cfg.channels_last = nhwc;
  models::ResNet net(cfg);
  net.to(gpu);
  if (bf16) net.to(DType::BF16);
  net.train(true);
  const DType t = bf16 ? DType::BF16 : DType::F32;
  Generator gen(1);
  Tensor x = Tensor::uniform(nhwc ? Shape{batch, 224, 224, 3} : Shape{batch, 3, 224, 224}, -1.0, 1.0, gen, t).to(gpu);
  std::vector<int64_t> labels(static_cast<size_t>(batch));
  for (int64_t i = 0; i < batch; ++i) labels[static_cast<size_t>(i)] = (i * 37) % 1000;
  Tensor y = Tensor::from_vector(labels, {batch}).to(gpu);
  auto step = [&] {
    net.zero_grad();
    Tensor loss = cross_entropy(net.forward(x), y);
    loss.backward();
    NoGradGuard ng;
    for (Tensor& p : net.parameters()) {
      Tensor g = p.grad();
      if (g.defined()) add_(p, g, -0.01);
    }
  };
  for (int i = 0; i < warm; ++i) step();
  CudaGraph graph(0);
  if (use_graph) {
    graph.capture(step);
    graph.replay();  // the first launch of a graph costs more than the others
  }
  cudaDeviceSynchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) use_graph ? graph.replay() : step();
  cudaDeviceSynchronize();
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  size_t free_b = 0, total_b = 0;
  cudaMemGetInfo(&free_b, &total_b);
  // Peak bytes handed out by the caching allocator: the figure comparable to torch.cuda.max_memory_allocated.
  const MemoryStats mem = device_backend(DeviceType::CUDA).allocator(0).stats();
  std::printf("kolo resnet50 batch=%lld dtype=%s layout=%s %s: %.0f img/s (%.1f ms/step), peak allocated %.1f GiB, "
              "reserved %.1f GiB, device used %.1f GiB\n",
              static_cast<long long>(batch), bf16 ? "bf16" : "f32", nhwc ? "nhwc" : "nchw", use_graph ? "graph" : "eager",
              static_cast<double>(batch * steps) / dt, 1e3 * dt / steps, static_cast<double>(mem.peak) / (1 << 30),
              static_cast<double>(mem.reserved) / (1 << 30), static_cast<double>(total_b - free_b) / (1 << 30));
  if (const char* p = std::getenv("KOLO_PROFILE_KERNELS"); p && !use_graph) {
    const int n = std::max(1, std::atoi(p));
    KernelProfiler::start();
    const auto p0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) step();
    cudaDeviceSynchronize();
    const double wall = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - p0).count();
    std::printf("kernel profile over %d steps (%.1f ms per step with profiling on):\n%s", n, wall / n,
                KernelProfiler::format(KernelProfiler::stop(), wall).c_str());
  }
  return 0;
}
