// Checkpoints of a data-parallel training run: model state dict (parameters and buffers), optimizer state,
// schedule step, data-loader position and the seed, in one safetensors file per
// save through CheckpointManager.
//
// Protocol: rank 0 saves. On resume rank 0 loads the newest valid checkpoint and every rank receives it
// by broadcast (a header tensor with the step, loader position and seed, then parameters, buffers and
// optimizer state), so ranks need no shared file system and start bit-identical.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>

#include "collectives/runtime.h"
#include "core/data/shard_sampler.h"
#include "models/module.h"
#include "optim/nonfinite_guard.h"
#include "optim/optimizer.h"

namespace kolo::examples {

struct TrainPosition {
  int64_t step = 0;              // optimizer steps done (the schedule's next step)
  data::LoaderState loader;      // batches already consumed
  // Data order and augmentation draws are pure functions of (seed, epoch, item), so the seed and the loader
  // position are the whole random state of a run; resuming checks that --seed is unchanged.
  uint64_t seed = 0;
};

class TrainCheckpointer {
 public:
  // dir empty: checkpointing disabled (save and resume are no-ops).
  TrainCheckpointer(Runtime& runtime, std::string dir, int keep_last = 3);

  bool enabled() const { return !dir_.empty(); }
  // Collective-free; writes only on rank 0. Returns the path written (empty elsewhere). `scaler` (fp16
  // runs) adds the loss scale and its finite-step count, so a resumed run scales and grows the same way.
  std::string save(const models::Module& model, const Optimizer& optimizer, const TrainPosition& pos,
                   const DynamicLossScaler* scaler = nullptr) const;
  // Collective: every rank must call it. Loads rank 0's newest checkpoint into model and optimizer on all
  // ranks and returns its position, or nothing when there is no checkpoint. Throws when the checkpoint was
  // written with another seed than `seed` (the data order would differ).
  // With `scaler`, a saved loss scale is restored into it (a checkpoint without one leaves it as it is).
  std::optional<TrainPosition> resume(models::Module& model, Optimizer& optimizer, uint64_t seed,
                                      DynamicLossScaler* scaler = nullptr) const;
  // Collective: a run that does not resume refuses a directory that already holds checkpoints, on every rank,
  // before training: a later --resume would pick another run's newest step, and rotation would delete this
  // run's own files while that run's newer ones stayed.
  void check_fresh_start() const;
  // A training loop's --resume: resume(), then `loader` moved to the saved position. Returns the step to start
  // at (0 without a checkpoint) and says which on `log` (null on ranks that do not log).
  template <typename Loader>
  int64_t resume_run(models::Module& model, Optimizer& optimizer, Loader& loader, uint64_t seed,
                     DynamicLossScaler* scaler, std::ostream* log) const {
    const std::optional<TrainPosition> pos = resume(model, optimizer, seed, scaler);
    if (pos) loader.set_state(pos->loader);
    if (log) {
      if (pos)
        *log << "resumed from step " << pos->step << " in " << dir_ << "\n";
      else
        *log << "no checkpoint in '" << dir_ << "': starting from scratch\n";
    }
    return pos ? pos->step : 0;
  }

 private:
  Runtime& runtime_;
  std::string dir_;
  int keep_last_;
};

// Parameters, buffers (batch-norm statistics) and dropout generator states of `model` from `root` to
// every rank.
void broadcast_module(Runtime& runtime, models::Module& model, int root = 0);
// Every rank's buffers replaced by their average over ranks (batch-norm statistics before evaluation).
void average_buffers(Runtime& runtime, models::Module& model);

}  // namespace kolo::examples
