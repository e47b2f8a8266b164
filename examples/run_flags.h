// The command-line flags both training programs share (precision, device, progress, checkpoints, seed,
// summary): declared and read in one place so the two programs cannot drift apart.
#pragma once

#include <cxxopts.hpp>

#include <cstdint>
#include <string>

#include "core/util/error.h"
#include "examples/common/precision.h"

namespace kolo::examples {

inline void add_run_flags(cxxopts::Options& options, const std::string& display_every) {
  options.add_options()
      ("fp32", "train in f32 (the default)")
      ("bf16", "bfloat16 model and activations, f32 master weights in the optimizer")
      ("fp16", "float16 model and activations, f32 master weights, dynamic loss scaling")
      ("device", "cpu|cuda|cuda:N|auto", cxxopts::value<std::string>()->default_value("auto"))
      ("display_every", "steps between progress lines (0: none)", cxxopts::value<int64_t>()->default_value(display_every))
      ("checkpoint_dir", "where rank 0 writes checkpoints", cxxopts::value<std::string>()->default_value(""))
      ("checkpoint_every", "steps between checkpoints (0: at the end only)", cxxopts::value<int64_t>()->default_value("0"))
      ("resume", "continue from the newest checkpoint in --checkpoint_dir")
      ("seed", "model initialisation and data order", cxxopts::value<uint64_t>()->default_value("0"))
      ("summary", "print layer shapes and parameter counts")
      ("h,help", "help");
}

// Copies the shared flags into a program's run options (ResnetRunOptions, TransformerRunOptions).
template <typename RunOptions>
void read_run_flags(const cxxopts::ParseResult& a, RunOptions& o) {
  o.precision = precision_from_flags(a.count("fp32") > 0, a.count("bf16") > 0, a.count("fp16") > 0);
  o.device = a["device"].as<std::string>();
  o.display_every = a["display_every"].as<int64_t>();
  o.checkpoint_dir = a["checkpoint_dir"].as<std::string>();
  o.checkpoint_every = a["checkpoint_every"].as<int64_t>();
  o.resume = a.count("resume") > 0;
  o.seed = a["seed"].as<uint64_t>();
  o.summary = a.count("summary") > 0;
  KOLO_CHECK(o.display_every >= 0, "--display_every ", o.display_every, " must not be negative (0: no progress lines)");
  KOLO_CHECK(o.checkpoint_every >= 0, "--checkpoint_every ", o.checkpoint_every,
             " must not be negative (0: at the end only)");
  KOLO_CHECK(!o.checkpoint_dir.empty() || (!o.resume && o.checkpoint_every == 0),
             o.resume ? "--resume" : "--checkpoint_every", " needs --checkpoint_dir");
}

}  // namespace kolo::examples
