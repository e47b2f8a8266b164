// train_transformer: data-parallel Transformer (base/big/tiny) training with token-based batching, warmup
// schedules, sparse or sparse-as-dense tied-embedding gradients, and BLEU on held-out sentences at the end.
// Runs on one rank without mpirun and on N ranks under mpirun/kolorun; CPU or GPU chosen at run time.
//
//   mpirun -np 2 train_transformer --model tiny --dataset reverse --steps 600 --warmup_steps 100 --lr 2e-3
#include <cxxopts.hpp>

#include <iostream>

#include "collectives/runtime.h"
#include "core/util/error.h"
#include "examples/run_flags.h"
#include "examples/common/transformer_training.h"

using namespace kolo;
using namespace kolo::examples;

int main(int argc, char** argv) {
  cxxopts::Options options("train_transformer", "Data-parallel Transformer training with BLEU evaluation");
  options.add_options()
      ("model", "base|big|tiny", cxxopts::value<std::string>()->default_value("base"))
      ("pre_norm", "layer norm before each sublayer (default: the paper's post-norm)")
      ("dropout", "dropout (-1: the model's default; tiny: 0)", cxxopts::value<double>()->default_value("-1"))
      ("dataset", "synthetic|copy|reverse|de_en|tsv", cxxopts::value<std::string>()->default_value("synthetic"))
      ("data_path", "tsv: source<TAB>target file; de_en: the Ding dictionary", cxxopts::value<std::string>()->default_value(""))
      ("vocab", "synthetic/copy/reverse: vocabulary size", cxxopts::value<int64_t>()->default_value("64"))
      ("train_sentences", "synthetic/copy/reverse: training pairs", cxxopts::value<int64_t>()->default_value("20000"))
      ("min_len", "synthetic/copy/reverse: shortest sequence", cxxopts::value<int64_t>()->default_value("4"))
      ("max_len", "synthetic/copy/reverse: longest sequence", cxxopts::value<int64_t>()->default_value("12"))
      ("bpe_vocab", "BPE merges file: loaded when present, else learned on the training split and written",
       cxxopts::value<std::string>()->default_value(""))
      ("bpe_size", "BPE vocabulary size", cxxopts::value<int64_t>()->default_value("8000"))
      ("test_sentences", "held-out pairs for BLEU", cxxopts::value<int64_t>()->default_value("500"))
      ("tokens_per_rank", "padded tokens per batch per rank", cxxopts::value<int64_t>()->default_value("4096"))
      ("steps", "optimizer steps (overrides --epochs)", cxxopts::value<int64_t>()->default_value("0"))
      ("epochs", "epochs of the training set", cxxopts::value<double>()->default_value("0"))
      ("lr", "peak learning rate", cxxopts::value<double>()->default_value("5e-4"))
      ("lr_schedule", "inverse_sqrt|noam|constant|cosine", cxxopts::value<std::string>()->default_value("inverse_sqrt"))
      ("warmup_steps", "linear warmup steps (0: none)", cxxopts::value<int64_t>()->default_value("4000"))
      ("optimizer", "adam (beta 0.9/0.98, eps 1e-9)", cxxopts::value<std::string>()->default_value("adam"))
      ("adam_beta2", "Adam beta2", cxxopts::value<double>()->default_value("0.98"))
      ("adam_eps", "Adam epsilon", cxxopts::value<double>()->default_value("1e-9"))
      ("clip_norm", "global gradient norm clip (0: off)", cxxopts::value<double>()->default_value("0"))
      ("label_smoothing", "label smoothing epsilon", cxxopts::value<double>()->default_value("0.1"))
      ("sparse_as_dense", "allreduce the embedding gradient densified instead of allgathering its rows")
      ("beam_size", "beam width for the BLEU evaluation (1: greedy)", cxxopts::value<int64_t>()->default_value("1"))
      ("length_penalty", "beam search GNMT length penalty alpha", cxxopts::value<double>()->default_value("0.6"))
      ("target_bleu", "exit with status 2 when BLEU is below this", cxxopts::value<double>()->default_value("0"));
  add_run_flags(options, "50");
  int status = 0;
  try {
    auto a = options.parse(argc, argv);
    if (a.count("help")) {
      std::cout << options.help() << "\n";
      return 0;
    }
    KOLO_CHECK(a["optimizer"].as<std::string>() == "adam", "--optimizer: train_transformer uses adam");
    TransformerRunOptions o;
    o.model = a["model"].as<std::string>();
    o.pre_norm = a.count("pre_norm") > 0;
    o.dropout = a["dropout"].as<double>();
    o.dataset = a["dataset"].as<std::string>();
    o.data_path = a["data_path"].as<std::string>();
    o.vocab = a["vocab"].as<int64_t>();
    o.train_sentences = a["train_sentences"].as<int64_t>();
    o.min_len = a["min_len"].as<int64_t>();
    o.max_len = a["max_len"].as<int64_t>();
    o.bpe_vocab = a["bpe_vocab"].as<std::string>();
    o.bpe_size = a["bpe_size"].as<int64_t>();
    o.test_sentences = a["test_sentences"].as<int64_t>();
    o.tokens_per_rank = a["tokens_per_rank"].as<int64_t>();
    o.steps = a["steps"].as<int64_t>();
    o.epochs = a["epochs"].as<double>();
    if (o.steps == 0 && o.epochs == 0) o.steps = 100;
    o.lr = a["lr"].as<double>();
    o.lr_schedule = a["lr_schedule"].as<std::string>();
    o.warmup_steps = a["warmup_steps"].as<int64_t>();
    o.beta2 = a["adam_beta2"].as<double>();
    o.eps = a["adam_eps"].as<double>();
    o.clip_norm = a["clip_norm"].as<double>();
    o.label_smoothing = a["label_smoothing"].as<double>();
    o.sparse_as_dense = a.count("sparse_as_dense") > 0;
    read_run_flags(a, o);
    o.beam_size = a["beam_size"].as<int64_t>();
    o.length_penalty = a["length_penalty"].as<double>();
    const double target = a["target_bleu"].as<double>();

    Runtime rt;
    const TransformerRunResult r = run_transformer(rt, o);
    if (r.diverged) {
      if (rt.rank() == 0)
        std::cerr << "train_transformer: training diverged at step " << r.steps << " (non-finite loss)\n";
      status = 3;
    } else if (target > 0 && r.bleu < target) {
      if (rt.rank() == 0) std::cerr << "train_transformer: BLEU " << r.bleu << " is below the target " << target << "\n";
      status = 2;
    }
    rt.shutdown();
  } catch (const std::exception& e) {
    std::cerr << "train_transformer: " << e.what() << "\n";
    return 1;
  }
  return status;
}
