// Rotating checkpoints in a directory: `<prefix>-<step>.safetensors`, each written atomically (see
// atomic_file.h), keeping the last K. Loading the latest skips (with a warning) a file that fails
// verification and falls back to the previous one. In distributed runs the caller saves on rank 0 only.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/io/safetensors.h"

namespace kolo {

class CheckpointManager {
 public:
  // Creates `dir` if needed and removes the temporary files of saves whose writer process is gone.
  explicit CheckpointManager(std::string dir, int keep_last = 3, std::string prefix = "ckpt");

  // Writes the checkpoint of `step` and deletes the lowest steps beyond keep_last, never the file just written
  // (which may be lower than files another run left); returns its path.
  std::string save(int64_t step, const std::vector<std::pair<std::string, Tensor>>& tensors,
                   const std::map<std::string, std::string>& metadata = {});
  // Complete checkpoints, oldest first, as (step, path).
  std::vector<std::pair<int64_t, std::string>> list() const;
  // The newest checkpoint that verifies, or nothing when there is none.
  std::optional<std::pair<int64_t, SafeTensors>> load_latest() const;

  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  int keep_last_;
  std::string prefix_;
};

}  // namespace kolo
