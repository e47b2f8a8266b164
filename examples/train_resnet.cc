// train_resnet: data-parallel ResNet training with tf_cnn_benchmarks-like flags and output. Runs on one rank
// without mpirun and on N ranks under mpirun/kolorun; CPU or GPU chosen at run time (--device).
//
//   mpirun -np 2 train_resnet --model resnet18 --small_stem --width 16 --dataset digits --num_epochs 10
#include <cxxopts.hpp>

#include <iostream>

#include "collectives/runtime.h"
#include "core/util/error.h"
#include "examples/run_flags.h"
#include "examples/common/resnet_training.h"

using namespace kolo;
using namespace kolo::examples;

int main(int argc, char** argv) {
  cxxopts::Options options("train_resnet", "Data-parallel ResNet training (tf_cnn_benchmarks-style output)");
  options.add_options()
      ("model", "resnet18|resnet34|resnet50|resnet101|resnet152", cxxopts::value<std::string>()->default_value("resnet50"))
      ("num_classes", "classes (0: the data set's)", cxxopts::value<int64_t>()->default_value("0"))
      ("image_size", "input height/width for synthetic and folder data (0: 224)", cxxopts::value<int64_t>()->default_value("0"))
      ("width", "channels of the first stage (0: 64, the standard)", cxxopts::value<int64_t>()->default_value("0"))
      ("small_stem", "3x3 stride-1 stem without max-pool, for 8x8 or 28x28 images")
      ("data_format", "activation layout: nhwc (channels last) or nchw", cxxopts::value<std::string>()->default_value("nhwc"))
      ("batch_size", "images per rank per step", cxxopts::value<int64_t>()->default_value("32"))
      ("num_batches", "optimizer steps (overrides --num_epochs)", cxxopts::value<int64_t>()->default_value("0"))
      ("num_epochs", "epochs of the training set", cxxopts::value<double>()->default_value("0"))
      ("dataset", "synthetic|digits|fashion_mnist|folder", cxxopts::value<std::string>()->default_value("synthetic"))
      ("data_dir", "digits CSV, Fashion-MNIST IDX folder, or image folder root with train/ and val/",
       cxxopts::value<std::string>()->default_value(""))
      ("held_out", "digits: images held out for evaluation", cxxopts::value<int64_t>()->default_value("297"))
      ("optimizer", "sgd|lars|adam", cxxopts::value<std::string>()->default_value("sgd"))
      ("lr", "learning rate per --lr_base_batch images (linear scaling rule)", cxxopts::value<double>()->default_value("0.1"))
      ("lr_base_batch", "global batch at which --lr applies", cxxopts::value<int64_t>()->default_value("256"))
      ("lr_schedule", "goyal|cosine|constant", cxxopts::value<std::string>()->default_value("goyal"))
      ("warmup_epochs", "linear warmup epochs (goyal: from --lr up to the linearly scaled lr)", cxxopts::value<double>()->default_value("0"))
      ("decay_epochs", "goyal: epochs where lr drops x0.1", cxxopts::value<std::vector<int64_t>>()->default_value("30,60,80"))
      ("momentum", "SGD/LARS momentum", cxxopts::value<double>()->default_value("0.9"))
      ("weight_decay", "L2 weight decay (not on biases and batch-norm)", cxxopts::value<double>()->default_value("1e-4"))
      ("loss_scale", "fp16: initial dynamic loss scale", cxxopts::value<double>()->default_value("65536"))
      ("target_accuracy", "exit with status 2 when the held-out accuracy is below this", cxxopts::value<double>()->default_value("0"))
      ("cuda_graph", "auto|on|off: replay the training step as a CUDA graph after 3 eager steps (one rank on a GPU, SGD, "
       "f32 or bf16; auto: wherever that applies)", cxxopts::value<std::string>()->default_value("auto"));
  add_run_flags(options, "10");
  int status = 0;
  try {
    auto a = options.parse(argc, argv);
    if (a.count("help")) {
      std::cout << options.help() << "\n";
      return 0;
    }
    ResnetRunOptions o;
    o.model = a["model"].as<std::string>();
    o.num_classes = a["num_classes"].as<int64_t>();
    o.image_size = a["image_size"].as<int64_t>();
    o.width = a["width"].as<int64_t>();
    o.small_stem = a.count("small_stem") > 0;
    const std::string format = a["data_format"].as<std::string>();
    KOLO_CHECK(format == "nhwc" || format == "nchw", "--data_format '", format, "': expected nhwc or nchw");
    o.channels_last = format == "nhwc";
    o.batch_size = a["batch_size"].as<int64_t>();
    o.num_batches = a["num_batches"].as<int64_t>();
    o.num_epochs = a["num_epochs"].as<double>();
    if (o.num_batches == 0 && o.num_epochs == 0) o.num_batches = 100;
    o.dataset = a["dataset"].as<std::string>();
    o.data_dir = a["data_dir"].as<std::string>();
    o.held_out = a["held_out"].as<int64_t>();
    o.optimizer.name = a["optimizer"].as<std::string>();
    o.optimizer.momentum = a["momentum"].as<double>();
    o.optimizer.weight_decay = a["weight_decay"].as<double>();
    o.lr = a["lr"].as<double>();
    o.lr_base_batch = a["lr_base_batch"].as<int64_t>();
    o.lr_schedule = a["lr_schedule"].as<std::string>();
    o.warmup_epochs = a["warmup_epochs"].as<double>();
    o.decay_epochs = a["decay_epochs"].as<std::vector<int64_t>>();
    o.loss_scale = a["loss_scale"].as<double>();
    o.cuda_graph = a["cuda_graph"].as<std::string>();
    read_run_flags(a, o);
    const double target = a["target_accuracy"].as<double>();
    KOLO_CHECK(target <= 0 || o.dataset != "synthetic",
               "--target_accuracy needs a held-out set, and --dataset synthetic has none");

    Runtime rt;
    const ResnetRunResult r = run_resnet(rt, o);
    if (target > 0 && r.eval_accuracy < target) {
      if (rt.rank() == 0)
        std::cerr << "train_resnet: held-out accuracy " << r.eval_accuracy << " is below the target " << target << "\n";
      status = 2;
    }
    rt.shutdown();
  } catch (const std::exception& e) {
    std::cerr << "train_resnet: " << e.what() << "\n";
    return 1;
  }
  return status;
}
