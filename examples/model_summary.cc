// model_summary: prints the `--summary` table (layers, output shapes, parameter shapes and counts) of any
// kolo model, running one forward pass on a zero input to record activation shapes.
#include <cxxopts.hpp>

#include <iostream>

#include "core/autograd/grad_mode.h"
#include "core/util/error.h"
#include "models/resnet.h"
#include "models/transformer.h"

using namespace kolo;
using namespace kolo::models;

int main(int argc, char** argv) {
  cxxopts::Options options("model_summary", "Print layer shapes and parameter counts of a kolo model");
  options.add_options()
      ("model", "resnet18|resnet34|resnet50|resnet101|resnet152|transformer_base|transformer_big",
       cxxopts::value<std::string>()->default_value("resnet50"))
      ("num_classes", "ResNet classes", cxxopts::value<int64_t>()->default_value("1000"))
      ("image_size", "ResNet input height/width", cxxopts::value<int64_t>()->default_value("224"))
      ("in_channels", "ResNet input channels", cxxopts::value<int64_t>()->default_value("3"))
      ("small_stem", "3x3 stride-1 stem without max-pool (tiny images)")
      ("channels_last", "NHWC activations")
      ("vocab_size", "Transformer shared vocabulary", cxxopts::value<int64_t>()->default_value("32000"))
      ("pre_norm", "Transformer pre-norm layers")
      ("seq_len", "Transformer source/target length of the shape-recording pass",
       cxxopts::value<int64_t>()->default_value("16"))
      ("summary", "print the table (the default; accepted for symmetry with the training programs)")
      ("h,help", "help");
  try {
    auto args = options.parse(argc, argv);
    if (args.count("help")) {
      std::cout << options.help() << "\n";
      return 0;
    }
    const std::string name = args["model"].as<std::string>();
    NoGradGuard ng;
    if (name.rfind("resnet", 0) == 0) {
      ResNetConfig c = resnet_config(std::stoi(name.substr(6)), args["num_classes"].as<int64_t>());
      c.image_size = args["image_size"].as<int64_t>();
      c.in_channels = args["in_channels"].as<int64_t>();
      c.small_stem = args.count("small_stem") > 0;
      c.channels_last = args.count("channels_last") > 0;
      ResNet model(c);
      model.eval();
      model.set_record_shapes(true);
      model.forward(model.example_input(1));
      std::cout << name << " (" << c.image_size << "x" << c.image_size << ", " << c.num_classes << " classes"
                << (c.channels_last ? ", channels_last" : "") << ")\n" << summary(model);
    } else if (name == "transformer_base" || name == "transformer_big") {
      const int64_t v = args["vocab_size"].as<int64_t>();
      TransformerConfig c = name == "transformer_base" ? transformer_base(v) : transformer_big(v);
      c.pre_norm = args.count("pre_norm") > 0;
      Transformer model(c);
      model.eval();
      model.set_record_shapes(true);
      const int64_t t = args["seq_len"].as<int64_t>();
      model.forward(Tensor::full({1, t}, 3, DType::I64), Tensor::full({1, t}, 3, DType::I64));
      std::cout << name << " (vocab " << v << ", " << (c.pre_norm ? "pre-norm" : "post-norm") << ")\n"
                << summary(model);
    } else {
      KOLO_FAIL("model_summary: unknown --model '", name, "'");
    }
  } catch (const std::exception& e) {
    std::cerr << "model_summary: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
