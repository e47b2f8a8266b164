// Full training-step throughput of kolo on the CPU: ResNet-50 (SGD momentum, cross-entropy) and Transformer-big
// (Adam, label-smoothed cross-entropy, tied 32k vocabulary), the same steps model_step_torch.py times with
// PyTorch; run_models.sh alternates the two. Prints one line per timed step and a tf_cnn_benchmarks-style total.
//
//   model_step_bench --model resnet50 --batch 16 --warmup 2 --steps 5 [--channels_last]
//   model_step_bench --model transformer_big --batch 16 --seq 32 --warmup 2 --steps 5
// --profile adds one step under KernelProfiler (per-kernel time); --unfused_bn empties the CPU slots of the
// fused batch norm + ReLU kernels, so ResNet runs the unfused batch_norm / add / relu composite (A/B runs).
#include <cxxopts.hpp>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <functional>
#include <iostream>
#include <vector>

#include "core/ops/kernel_profiler.h"
#include "core/ops/kernels/batch_norm_act.h"
#include "core/ops/nn.h"
#include "core/tensor/tensor.h"
#include "core/util/error.h"
#include "models/resnet.h"
#include "models/transformer.h"
#include "optim/adam.h"
#include "optim/sgd.h"

using namespace kolo;

namespace {

std::vector<NamedParameter> named(const models::Module& m) {
  std::vector<NamedParameter> params;
  for (auto& [name, t] : m.named_parameters()) params.push_back({name, t});
  return params;
}

// Token ids in [3, vocab): no pad/bos/eos, so every target position counts as in the PyTorch twin.
Tensor random_tokens(int64_t batch, int64_t seq, int64_t vocab, uint64_t& state) {
  std::vector<int64_t> ids(static_cast<size_t>(batch * seq));
  for (auto& id : ids) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    id = 3 + static_cast<int64_t>((state >> 33) % static_cast<uint64_t>(vocab - 3));
  }
  return Tensor::from_vector(ids, {batch, seq});
}

// Runs `warmup` untimed then `steps` timed calls of `step`; prints each (wall and process CPU seconds: on a
// shared machine the CPU time is the steadier figure) and returns the median wall seconds. The best step is
// printed too: it is the one least disturbed by other processes.
double time_steps(const std::function<double()>& step, int warmup, int steps, const char* unit, double items) {
  using clock = std::chrono::steady_clock;
  for (int i = 0; i < warmup; ++i) {
    auto t0 = clock::now();
    const double loss = step();
    std::printf("warmup %d: %.3f s loss %.4f\n", i + 1, std::chrono::duration<double>(clock::now() - t0).count(), loss);
  }
  std::vector<double> secs, cpu;
  for (int i = 0; i < steps; ++i) {
    const std::clock_t c0 = std::clock();
    auto t0 = clock::now();
    const double loss = step();
    secs.push_back(std::chrono::duration<double>(clock::now() - t0).count());
    cpu.push_back(static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC);
    std::printf("step %d: %.3f s (cpu %.3f s)  %.2f %s  loss %.4f\n", i + 1, secs.back(), cpu.back(),
                items / secs.back(), unit, loss);
    std::fflush(stdout);
  }
  std::printf("best %s: %.2f (step %.3f s)\n", unit, items / *std::min_element(secs.begin(), secs.end()),
              *std::min_element(secs.begin(), secs.end()));
  std::sort(cpu.begin(), cpu.end());
  std::printf("cpu seconds per step (median): %.3f\n", cpu[cpu.size() / 2]);
  std::sort(secs.begin(), secs.end());
  return secs[secs.size() / 2];
}

// One more step with KernelProfiler on: where the step's time goes, kernel by kernel.
void profile_step(const std::function<double()>& step) {
  KernelProfiler::start();
  const auto t0 = std::chrono::steady_clock::now();
  step();
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::printf("profiled step: %.3f s\n%s", ms / 1e3, KernelProfiler::format(KernelProfiler::stop(), ms).c_str());
}

}  // namespace

int main(int argc, char** argv) {
  cxxopts::Options options("model_step_bench", "kolo CPU training-step throughput (ResNet-50, Transformer-big)");
  options.add_options()
      ("model", "resnet50|transformer_big", cxxopts::value<std::string>()->default_value("resnet50"))
      ("batch", "images or sentences per step", cxxopts::value<int64_t>()->default_value("16"))
      ("seq", "transformer: source and target length", cxxopts::value<int64_t>()->default_value("32"))
      ("image_size", "resnet: input height/width", cxxopts::value<int64_t>()->default_value("224"))
      ("vocab", "transformer: shared vocabulary", cxxopts::value<int64_t>()->default_value("32768"))
      ("channels_last", "resnet: NHWC activations")
      ("warmup", "untimed steps", cxxopts::value<int>()->default_value("2"))
      ("steps", "timed steps", cxxopts::value<int>()->default_value("5"))
      ("profile", "one extra step under KernelProfiler, printed per kernel")
      ("unfused_bn", "run batch norm, residual add and ReLU as separate ops (no fused CPU kernel)")
      ("h,help", "help");
  try {
    auto a = options.parse(argc, argv);
    if (a.count("help")) {
      std::cout << options.help() << "\n";
      return 0;
    }
    const std::string model_name = a["model"].as<std::string>();
    const int64_t batch = a["batch"].as<int64_t>();
    const int warmup = a["warmup"].as<int>(), steps = a["steps"].as<int>();
    KOLO_CHECK(steps > 0 && warmup >= 0, "--steps must be positive and --warmup non-negative");
    const bool profile = a.count("profile") > 0;
    if (a.count("unfused_bn")) {
      batch_norm_act_fwd_kernel().set(DeviceType::CPU, nullptr);
      batch_norm_act_bwd_kernel().set(DeviceType::CPU, nullptr);
    }
    double median = 0, items = 0;
    const char* unit = "";
    if (model_name == "resnet50") {
      models::ResNetConfig cfg = models::resnet_config(50, 1000);
      cfg.image_size = a["image_size"].as<int64_t>();
      cfg.channels_last = a.count("channels_last") > 0;
      models::ResNet model(cfg);
      model.train();
      SgdOptions so;
      so.lr = 0.1;
      so.momentum = 0.9;
      so.weight_decay = 5e-5;
      Sgd opt(named(model), so);
      Generator gen(1);
      const Shape xs = cfg.channels_last ? Shape{batch, cfg.image_size, cfg.image_size, 3}
                                         : Shape{batch, 3, cfg.image_size, cfg.image_size};
      Tensor x = Tensor::randn(xs, gen);
      uint64_t rng = 7;
      Tensor y = random_tokens(batch, 1, 1000, rng).reshape({batch});
      std::printf("kolo resnet50 batch=%lld image=%lld channels_last=%d\n", static_cast<long long>(batch),
                  static_cast<long long>(cfg.image_size), cfg.channels_last ? 1 : 0);
      items = static_cast<double>(batch);
      unit = "img/s";
      const std::function<double()> step = [&] {
        opt.zero_grad();
        Tensor loss = cross_entropy(model.forward(x), y);
        loss.backward();
        opt.step();
        return loss.item();
      };
      median = time_steps(step, warmup, steps, unit, items);
      if (profile) profile_step(step);
    } else if (model_name == "transformer_big") {
      const int64_t seq = a["seq"].as<int64_t>();
      // Dropout 0.1 as the PyTorch anchor's nn.Transformer (kolo's transformer_big default is the paper's 0.3).
      models::TransformerConfig cfg = models::transformer_big(a["vocab"].as<int64_t>());
      cfg.dropout = 0.1;
      models::Transformer model(cfg);
      model.train();
      AdamOptions ao = AdamOptions::transformer();
      Adam opt(named(model), ao);
      uint64_t rng = 11;
      Tensor src = random_tokens(batch, seq, cfg.vocab_size, rng);
      Tensor tgt = random_tokens(batch, seq, cfg.vocab_size, rng);
      std::printf("kolo transformer_big batch=%lldx%lld vocab=%lld params=%s\n", static_cast<long long>(batch),
                  static_cast<long long>(seq), static_cast<long long>(cfg.vocab_size),
                  models::with_commas(model.parameter_count()).c_str());
      items = static_cast<double>(batch * seq);
      unit = "tgt tok/s";
      const std::function<double()> step = [&] {
        opt.zero_grad();
        Tensor loss = models::label_smoothed_loss(model.forward(src, tgt), tgt, cfg.pad_id, 0.1);
        loss.backward();
        opt.step();
        return loss.item();
      };
      median = time_steps(step, warmup, steps, unit, items);
      if (profile) profile_step(step);
    } else {
      KOLO_FAIL("--model '", model_name, "': expected resnet50 or transformer_big");
    }
    std::printf("total %s: %.2f (median step %.3f s)\n", unit, items / median, median);
  } catch (const std::exception& e) {
    std::cerr << "model_step_bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
