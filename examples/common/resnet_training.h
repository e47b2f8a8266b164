// Data-parallel ResNet training as train_resnet runs it, callable from tests: options in, loss curve,
// throughput and held-out accuracy out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "collectives/runtime.h"
#include "examples/common/precision.h"
#include "examples/common/run_setup.h"

namespace kolo::examples {

struct ResnetRunOptions {
  std::string model = "resnet50";
  int64_t num_classes = 0;   // 0: the data set's
  int64_t image_size = 0;    // 0: the data set's (synthetic: 224)
  int64_t width = 0;         // 0: the model's standard 64
  bool small_stem = false;
  bool channels_last = true;  // --data_format nhwc (the fast layout of oneDNN and cuDNN) or nchw
  int64_t batch_size = 32;   // per rank
  int64_t num_batches = 0;   // total optimizer steps; 0: num_epochs epochs
  double num_epochs = 0;
  std::string dataset = "synthetic";  // synthetic | digits | fashion_mnist | folder
  std::string data_dir;
  int64_t held_out = 297;    // digits: images kept out of training for the accuracy figure
  OptimizerFlags optimizer;
  double lr = 0.1;           // per lr_base_batch images; scaled linearly with the global batch
  int64_t lr_base_batch = 256;
  std::string lr_schedule = "goyal";
  double warmup_epochs = 0;
  std::vector<int64_t> decay_epochs{30, 60, 80};
  Precision precision = Precision::F32;  // bf16/fp16: low-precision model, f32 master weights
  double loss_scale = 65536;             // fp16: the dynamic loss scale's initial value
  std::string device = "auto";
  int64_t display_every = 10;
  std::string checkpoint_dir;
  int64_t checkpoint_every = 0;  // steps; 0: only at the end (when checkpoint_dir is set)
  bool resume = false;
  uint64_t seed = 0;
  bool summary = false;
  int num_workers = 2;
  bool print = true;         // rank 0 prints progress
  // auto|on|off. One rank on a GPU, SGD, f32 or bf16: after a few eager steps the training step (forward,
  // backward, SGD update) is captured as a CUDA graph and replayed. auto: wherever that applies.
  std::string cuda_graph = "auto";
};

struct ResnetRunResult {
  std::vector<double> losses;   // this rank's loss of every step run in this call
  int64_t first_step = 0;       // global step of losses[0] (after a resume)
  double images_per_sec = 0;    // all ranks, after warm-up
  double eval_accuracy = -1;    // held-out accuracy over all ranks; -1 without a held-out set
  int64_t steps = 0;            // global step count at the end
  int64_t skipped_steps = 0;    // fp16: steps skipped for overflow (the loss scale backed off)
};

// Collective over the runtime's ranks.
ResnetRunResult run_resnet(Runtime& runtime, const ResnetRunOptions& options);

}  // namespace kolo::examples
