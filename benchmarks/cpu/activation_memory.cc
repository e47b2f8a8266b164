// Activation memory of a ResNet training step on the CPU allocator: bytes in use after the forward (what the
// autograd graph saves for the backward, plus the logits) and the step's peak, both above the bytes in use
// before the step. activation_memory_torch.py beside it prints PyTorch's saved bytes for the same network.
// Usage: activation_memory [batch] [bf16|f32] [depth]
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/device/allocator.h"
#include "core/ops/nn.h"
#include "models/resnet.h"

int main(int argc, char** argv) {
  using namespace kolo;
  const int64_t batch = argc > 1 ? std::atoll(argv[1]) : 8;
  const DType dtype = argc > 2 && std::string(argv[2]) == "f32" ? DType::F32 : DType::BF16;
  const int depth = argc > 3 ? std::atoi(argv[3]) : 50;
  models::ResNetConfig cfg = models::resnet_config(depth);
  cfg.channels_last = true;
  models::ResNet net(cfg);
  net.to(dtype);
  net.train(true);
  Generator gen(1);
  Tensor x = Tensor::uniform(Shape{batch, 224, 224, 3}, -1.0, 1.0, gen, dtype);
  Tensor y = Tensor::from_vector(std::vector<int64_t>(static_cast<size_t>(batch), 3), {batch});
  Allocator& alloc = allocator_for(Device::cpu());
  auto mib = [](size_t b) { return static_cast<double>(b) / (1 << 20); };
  for (int step = 0; step < 2; ++step) {  // the second step runs on the warmed-up cache
    net.zero_grad();
    const size_t before = alloc.stats().current;
    alloc.reset_peak();
    Tensor logits = net.forward(x);
    const size_t after_forward = alloc.stats().current;
    cross_entropy(logits, y).backward();
    std::printf("kolo resnet%d batch %lld %s step %d: after forward +%.1f MiB, step peak +%.1f MiB, reserved %.1f MiB\n",
                depth, static_cast<long long>(batch), dtype_name(dtype), step, mib(after_forward - before),
                mib(alloc.stats().peak - before), mib(alloc.stats().reserved));
  }
  return 0;
}
