// Optimizer step time over ResNet-50's parameters (161 f32 tensors, 25.6M elements) on the GPU and the
// CPU: the fused flat-buffer updates of optim/ (CUDA kernels from optim/cuda). Prints one line per
// optimizer and device: ms/step and the effective memory bandwidth of the update's reads and writes.
// Usage: optim_bench [steps]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>

#include "core/device/device_backend.h"
#include "models/resnet.h"
#include "optim/adam.h"
#include "optim/lamb.h"
#include "optim/lars.h"
#include "optim/sgd.h"

using namespace kolo;

namespace {

using MakeOpt = std::function<std::unique_ptr<Optimizer>(std::vector<ParamGroup>)>;

void run(const std::string& what, Device dev, int steps, double bytes_per_elem, const MakeOpt& make) {
  models::ResNet net(models::resnet_config(50));
  net.to(dev);
  std::vector<NamedParameter> ps;
  for (auto& [n, t] : net.named_parameters()) ps.push_back({n, t});
  std::unique_ptr<Optimizer> opt = make(decay_groups(ps));
  opt->zero_grad();
  int64_t numel = 0;
  for (size_t g = 0; g < opt->num_groups(); ++g) numel += opt->flat(g).numel();
  auto sync = [&] { device_backend(dev.type).synchronize(dev.index); };
  for (int i = 0; i < 3; ++i) opt->step();
  sync();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) opt->step();
  sync();
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / steps;
  std::printf("%-22s %-6s params %zu elems %lld  %8.3f ms/step  %7.1f GB/s\n", what.c_str(), dev.str().c_str(),
              ps.size(), static_cast<long long>(numel), ms, bytes_per_elem * static_cast<double>(numel) / (ms * 1e6));
}

}  // namespace

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 50;
  std::vector<Device> devs;
  if (device_available(DeviceType::CUDA)) devs.push_back(Device::cuda(0));
  devs.push_back(Device::cpu());
  for (Device d : devs) {
    const int n = d.is_cpu() ? 5 : steps;
    // Bytes per element: reads and writes of f32 param, grad and state (SGD: p r/w, g r, buf r/w = 20).
    run("SGD momentum", d, n, 20, [](std::vector<ParamGroup> g) {
      return std::make_unique<Sgd>(std::move(g), SgdOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-4});
    });
    run("AdamW", d, n, 28, [](std::vector<ParamGroup> g) {
      return std::make_unique<AdamW>(std::move(g), AdamOptions{.lr = 1e-3, .weight_decay = 1e-2});
    });
    run("AdamW clip 1.0", d, n, 40, [](std::vector<ParamGroup> g) {
      auto o = std::make_unique<AdamW>(std::move(g), AdamOptions{.lr = 1e-3, .weight_decay = 1e-2});
      o->set_clip_grad_norm(1.0);
      return o;
    });
    run("LARS", d, n, 28, [](std::vector<ParamGroup> g) {
      return std::make_unique<Lars>(std::move(g), LarsOptions{.lr = 0.1, .weight_decay = 1e-4});
    });
    run("LAMB", d, n, 40, [](std::vector<ParamGroup> g) {
      return std::make_unique<Lamb>(std::move(g), LambOptions{.lr = 1e-3, .weight_decay = 1e-2});
    });
  }
  return 0;
}
