// run_resnet: the train_resnet loop (data, model, DistributedOptimizer, schedule, checkpoints, evaluation).
#include "examples/common/resnet_training.h"

#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>

#include "core/autograd/grad_mode.h"
#include "core/device/device_backend.h"
#include "core/data/image_folder.h"
#include "core/data/image_loader.h"
#include "core/ops/nn.h"
#include "core/ops/reduce.h"
#include "core/util/error.h"
#include "examples/common/loss_log.h"
#include "examples/common/step_profile.h"
#include "examples/common/step_timeline.h"
#include "examples/common/throughput.h"
#include "examples/common/train_checkpoint.h"
#include "models/resnet.h"
#include "optim/distributed_optimizer.h"

namespace kolo::examples {
namespace {

// --cuda_graph: the first steps run eagerly (cuDNN and cuBLASLt choices made, the momentum buffers started,
// memory cached); then one step is captured on that step's batch tensors, and every later batch of the same
// shape is copied into them (nothing to copy for a batch staged on the device) and the graph replayed. A batch
// of another shape (an epoch's last) runs eagerly. The returned loss is a copy, since each replay overwrites
// the captured one.
class GraphStep {
 public:
  static constexpr int64_t kEagerSteps = 3;

  GraphStep(models::ResNet& model, Optimizer& opt, Device device) : model_(model), opt_(opt), device_(device) {}

  Tensor run(int64_t index, const Tensor& images, const Tensor& labels) {
    if (index < kEagerSteps || (graph_ && (images.shape() != images_.shape() || labels.shape() != labels_.shape())))
      return step(images, labels);
    if (!graph_) {
      images_ = images;
      labels_ = labels;
      graph_ = device_backend(device_.type).create_graph(device_.index);
      graph_->capture([&] { loss_ = step(images_, labels_); });  // step() counted this step once already
    } else {
      NoGradGuard ng;
      if (!images.same(images_)) images_.copy_(images);
      if (!labels.same(labels_)) labels_.copy_(labels);
      opt_.note_replayed_step();
    }
    graph_->replay();
    NoGradGuard ng;
    return loss_.clone();
  }

 private:
  Tensor step(const Tensor& images, const Tensor& labels) {
    opt_.zero_grad();
    Tensor loss = cross_entropy(model_.forward(images), labels);
    loss.backward();
    opt_.step();
    return loss.detach();
  }

  models::ResNet& model_;
  Optimizer& opt_;
  Device device_;
  std::unique_ptr<Graph> graph_;
  Tensor images_, labels_, loss_;
};

struct ImageData {
  std::shared_ptr<const data::ImageSource> train, eval;  // eval may be null (synthetic)
};

// Fixed seed for the held-out split, so the held-out images do not change with --seed.
constexpr uint64_t kSplitSeed = 20261123;

std::shared_ptr<data::InMemoryImages> normalized(data::InMemoryImages set, const data::InMemoryImages& stats_from) {
  auto [mean, stddev] = stats_from.channel_stats();
  set.set_normalization(mean, stddev);
  return std::make_shared<data::InMemoryImages>(std::move(set));
}

ImageData load_images(const ResnetRunOptions& o, int64_t synthetic_size) {
  if (o.dataset == "synthetic") {
    const int64_t size = o.image_size > 0 ? o.image_size : 224;
    const int64_t classes = o.num_classes > 0 ? o.num_classes : 1000;
    return {std::make_shared<data::SyntheticImages>(data::ImageSpec{3, size, size}, classes, synthetic_size, o.seed),
            nullptr};
  }
  if (o.dataset == "digits") {
    data::InMemoryImages all =
        data::load_sklearn_digits(o.data_dir.empty() ? data::kSklearnDigitsPath : o.data_dir);
    KOLO_CHECK(o.held_out > 0 && o.held_out < all.size(), "--held_out ", o.held_out, " of ", all.size(), " digits");
    auto [train_idx, eval_idx] = data::split_indices(all.size(), o.held_out, kSplitSeed);
    data::InMemoryImages train = all.subset(train_idx);
    return {normalized(train, train), normalized(all.subset(eval_idx), train)};
  }
  if (o.dataset == "fashion_mnist") {
    const std::string dir = o.data_dir.empty() ? data::kFashionMnistDir : o.data_dir;
    data::InMemoryImages train =
        data::read_idx(dir + "/train-images-idx3-ubyte.gz", dir + "/train-labels-idx1-ubyte.gz");
    data::InMemoryImages test = data::read_idx(dir + "/t10k-images-idx3-ubyte.gz", dir + "/t10k-labels-idx1-ubyte.gz");
    return {normalized(train, train), normalized(test, train)};
  }
  if (o.dataset == "folder") {
    KOLO_CHECK(!o.data_dir.empty(), "--dataset folder needs --data_dir with train/ and val/ class folders");
    data::ImageTransform t;
    t.height = t.width = o.image_size > 0 ? o.image_size : 224;
    data::ImageTransform e = t;
    e.train = false;
    e.resize_shorter = t.height * 8 / 7;  // 224 -> 256 as the ImageNet recipe
    return {std::make_shared<data::ImageFolder>(o.data_dir + "/train", t),
            std::make_shared<data::ImageFolder>(o.data_dir + "/val", e)};
  }
  KOLO_FAIL("--dataset '", o.dataset, "': expected synthetic, digits, fashion_mnist or folder");
}

// A loader batch ([B, C, H, W] f32 on the host) as the model's input: on its device, in its layout and dtype.
Tensor model_input(const Tensor& images, Device device, DType dtype, bool channels_last) {
  Tensor x = images.to(device);
  if (channels_last) x = x.permute({0, 2, 3, 1}).contiguous();
  return x.to(dtype);
}

// Held-out accuracy over all ranks: each rank scores its exact share, then the counts are summed.
double evaluate(Runtime& rt, models::ResNet& model, std::shared_ptr<const data::ImageSource> source,
                const ResnetRunOptions& o, Device device, DType dtype) {
  average_buffers(rt, model);
  model.eval();
  NoGradGuard ng;
  data::ImageLoaderOptions lo;
  lo.batch_size = o.batch_size;
  lo.shard = {rt.rank(), rt.size(), 0, /*shuffle=*/false, data::ShardMode::kExact};
  lo.drop_last = false;
  lo.num_workers = o.num_workers;
  data::ImageLoader loader(std::move(source), lo);
  double counts[2] = {0, 0};  // correct, seen
  while (auto batch = loader.next()) {
    Tensor logits = model.forward(model_input(batch->images, device, dtype, o.channels_last));
    const std::vector<int64_t> pred = argmax(logits, 1).to_vector<int64_t>();
    const std::vector<int64_t> labels = batch->labels.to_vector<int64_t>();
    for (size_t i = 0; i < labels.size(); ++i) counts[0] += pred[i] == labels[i];
    counts[1] += static_cast<double>(labels.size());
  }
  Tensor t = Tensor::from_vector(std::vector<double>{counts[0], counts[1]}, {2});
  AllreduceOptions sum;
  sum.op = ReduceOp::Sum;
  rt.allreduce_async(t, "eval.accuracy", sum).wait();
  const std::vector<double> total = t.to_vector<double>();
  model.train();
  return total[1] > 0 ? total[0] / total[1] : 0.0;
}

}  // namespace

ResnetRunResult run_resnet(Runtime& rt, const ResnetRunOptions& o) {
  std::ostream* log = o.print && rt.rank() == 0 ? &std::cout : nullptr;
  const Device device = select_device(o.device, rt);
  const DType dtype = model_dtype(o.precision);
  KOLO_CHECK(o.batch_size > 0, "--batch_size must be positive, got ", o.batch_size);
  KOLO_CHECK(o.num_batches > 0 || o.num_epochs > 0, "give --num_batches or --num_epochs");

  // Synthetic data: epochs of 50 batches per rank, whatever the run's length, so that a longer or resumed run
  // sees the same images.
  const int64_t synthetic_size = o.batch_size * rt.size() * 50;
  ImageData images = load_images(o, synthetic_size);
  const data::ImageSpec spec = images.train->spec();

  KOLO_CHECK(o.model.rfind("resnet", 0) == 0 && o.model.size() > 6 && o.model.size() <= 9 &&
                 o.model.find_first_not_of("0123456789", 6) == std::string::npos,
             "--model '", o.model, "': expected resnet18, resnet34, resnet50, resnet101 or resnet152");
  models::ResNetConfig cfg = models::resnet_config(std::stoi(o.model.substr(6)));
  cfg.num_classes = o.num_classes > 0 ? o.num_classes : images.train->num_classes();
  cfg.in_channels = spec.channels;
  cfg.image_size = spec.height;
  cfg.small_stem = o.small_stem;
  cfg.channels_last = o.channels_last;
  if (o.width > 0) cfg.width = o.width;
  cfg.zero_init_residual = true;
  cfg.seed = o.seed;
  models::ResNet model(cfg);
  if (o.summary && log) {
    NoGradGuard ng;
    model.eval();
    model.set_record_shapes(true);
    model.forward(model.example_input(1));
    model.set_record_shapes(false);
    model.train();
    *log << o.model << " (" << spec.height << "x" << spec.width << "x" << spec.channels << ", " << cfg.num_classes
         << " classes)\n" << models::summary(model);
  }
  model.to(device);
  model.cast_parameters(dtype);  // bf16/fp16: the optimizer below keeps the f32 masters

  std::vector<NamedParameter> params;
  for (auto& [name, t] : model.named_parameters()) params.push_back({name, t});
  const int64_t global_batch = o.batch_size * rt.size();
  OptimizerFlags of = o.optimizer;
  of.lr = linear_scaling_rule(o.lr, global_batch, o.lr_base_batch);
  std::unique_ptr<Optimizer> inner = make_optimizer(params, of);
  // A captured step has no gradient exchange (one rank) and no host reads (no loss scaling): the update
  // runs on the inner optimizer, which reads its learning rate from device memory.
  KOLO_CHECK(o.cuda_graph == "auto" || o.cuda_graph == "on" || o.cuda_graph == "off", "--cuda_graph '", o.cuda_graph,
             "': expected auto, on or off");
  const bool graph_applies =
      rt.size() == 1 && !device.is_cpu() && o.precision != Precision::F16 && of.name == "sgd";
  KOLO_CHECK(o.cuda_graph != "on" || graph_applies,
             "--cuda_graph on needs one rank on a GPU, f32 or bf16 and SGD; got ", rt.size(), " rank(s), ",
             device.str(), ", ", precision_name(o.precision), ", optimizer ", of.name);
  const bool use_graph = o.cuda_graph != "off" && graph_applies;
  std::optional<DistributedOptimizer> dist;
  if (use_graph) inner->set_capturable(true);
  else dist.emplace(*inner, rt);
  broadcast_module(rt, model, 0);  // same start on every rank, buffers included
  inner->reload_master_weights();  // the masters follow the broadcast values
  LossScalerOptions scaler;
  scaler.init_scale = o.loss_scale;
  PrecisionStep precision(o.precision, scaler);

  data::ImageLoaderOptions lo;
  lo.batch_size = o.batch_size;
  lo.shard = {rt.rank(), rt.size(), o.seed, true, data::ShardMode::kEven};
  lo.num_workers = o.num_workers;
  data::ImageLoader loader(images.train, lo);
  const int64_t steps_per_epoch = loader.batches_per_epoch();
  const int64_t total_steps =
      o.num_batches > 0 ? o.num_batches : static_cast<int64_t>(std::llround(o.num_epochs * steps_per_epoch));
  KOLO_CHECK(total_steps > 0, "--num_epochs ", o.num_epochs, " is less than one step of ", steps_per_epoch,
             " per epoch");

  ScheduleFlags sf;
  sf.name = o.lr_schedule;
  sf.peak = of.lr;
  sf.warmup_from = std::min(o.lr, of.lr);  // Goyal et al.: from the small-batch lr up to the scaled one
  sf.warmup_steps = static_cast<int64_t>(std::llround(o.warmup_epochs * steps_per_epoch));
  sf.total_steps = total_steps;
  sf.steps_per_epoch = steps_per_epoch;
  sf.decay_epochs = o.decay_epochs;
  LrSchedulePtr schedule = make_schedule(sf);

  TrainCheckpointer ckpt(rt, o.checkpoint_dir);
  if (!o.resume) ckpt.check_fresh_start();
  int64_t step = o.resume ? ckpt.resume_run(model, *inner, loader, o.seed, precision.loss_scaler(), log) : 0;
  // Synthetic data on a GPU is staged on the device once and reused every step, as tf_cnn_benchmarks does:
  // the figure is then the training step's, not the host loader's and the host-to-device copy's.
  const bool stage_synthetic = o.dataset == "synthetic" && !device.is_cpu();
  if (log) {
    *log << "Model: " << o.model << " (" << models::with_commas(model.parameter_count()) << " parameters)\n"
         << "Dataset: " << o.dataset << " (" << images.train->size() << " training images"
         << (images.eval ? ", " + std::to_string(images.eval->size()) + " held out" : std::string())
         << (stage_synthetic ? "; one batch staged on the device" : "") << ", " << (o.channels_last ? "NHWC" : "NCHW")
         << ")\n"
         << "Batch size: " << global_batch << " global, " << o.batch_size << " per rank\n"
         << "Ranks: " << rt.size() << " (" << rt.backend_name() << "), device " << device.str()
         << ", " << precision_banner(o.precision, precision.loss_scale()) << "\n"
         << "Optimizer: " << of.name << ", lr " << schedule->describe()
         << (use_graph ? "; the step replayed as a CUDA graph" : "") << "\n"
         << "Steps: " << total_steps << " (" << steps_per_epoch << " per epoch)\n";
  }

  ResnetRunResult result;
  result.first_step = step;
  GraphStep graph_step(model, *inner, device);
  ThroughputMeter meter("images", rt.size(), std::min<int64_t>(10, (total_steps - step) / 5), device);
  if (log) meter.print_header(*log);
  LossLog losses;
  std::optional<data::ImageBatch> staged;
  if (stage_synthetic) {  // the first batch of the first epoch, whatever position a resume left the loader at
    staged = data::ImageLoader(images.train, lo).next();
    KOLO_CHECK(staged.has_value(), "no synthetic batch to stage");
    staged->images = model_input(staged->images, device, dtype, o.channels_last);
    staged->labels = staged->labels.to(device);
  }
  StepProfile profile(step, total_steps, device);
  StepTimeline timeline(rt, device);
  precision.set_phase_marker([&timeline](const char* phase) { timeline.mark(phase); });
  while (step < total_steps) {
    profile.before_step(step);
    std::optional<data::ImageBatch> batch = staged ? staged : loader.next();
    if (!batch) continue;  // end of an epoch; the next call starts the following one
    // The schedule counts updates applied (the optimizer's step count, checkpointed with it): an fp16 step skipped
    // for overflow does not use up warmup. Update k+1 runs at schedule(k), as fairseq's and Hugging Face's.
    inner->set_lr((*schedule)(inner->step_count()));
    meter.start_step();
    if (use_graph) {
      const Tensor images = staged ? batch->images : model_input(batch->images, device, dtype, o.channels_last);
      losses.add(graph_step.run(step - result.first_step, images, staged ? batch->labels : batch->labels.to(device)));
    } else {
      dist->zero_grad();
      timeline.mark("FORWARD");
      Tensor logits =
          model.forward(staged ? batch->images : model_input(batch->images, device, dtype, o.channels_last));
      // f32 whatever the model dtype: cross_entropy computes and returns half logits' loss in f32.
      Tensor loss = cross_entropy(logits, batch->labels.to(device));
      precision.backward_and_step(loss, *dist);
      losses.add(loss);
    }
    timeline.end_step();
    meter.end_step(batch->labels.numel());
    ++step;
    if (o.display_every > 0 && (step % o.display_every == 0 || step == total_steps)) {
      const double avg = metric_average(rt, losses.interval_mean(), "train.loss");
      KOLO_CHECK(std::isfinite(avg), "training diverged: loss ", avg, " at step ", step);
      if (log) meter.print_interval(*log, step, avg, total_steps);
    }
    if (ckpt.enabled() && o.checkpoint_every > 0 && step % o.checkpoint_every == 0)
      ckpt.save(model, *inner, {step, loader.state(), o.seed}, precision.loss_scaler());
  }
  meter.drain([&] { synchronize_device(device); });
  profile.finish(log);
  result.losses = losses.all();
  if (ckpt.enabled() && (o.checkpoint_every <= 0 || step % o.checkpoint_every != 0))
    ckpt.save(model, *inner, {step, loader.state(), o.seed}, precision.loss_scaler());
  result.steps = step;
  result.skipped_steps = precision.skipped_steps();
  if (log && o.precision == Precision::F16)
    *log << "fp16: " << precision.skipped_steps() << " steps skipped for overflow, final loss scale "
         << precision.loss_scale() << "\n";
  result.images_per_sec = meter.total_rate();
  if (log) meter.print_total(*log);
  if (log) print_device_memory(*log, device);
  if (images.eval) {
    result.eval_accuracy = evaluate(rt, model, images.eval, o, device, dtype);
    if (log) {
      char line[64];
      std::snprintf(line, sizeof line, "eval accuracy: %.4f\n", result.eval_accuracy);
      *log << line << std::flush;
    }
  }
  return result;
}

}  // namespace kolo::examples
