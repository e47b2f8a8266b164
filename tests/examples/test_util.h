// Shared main() pieces of the multi-rank training tests: one Runtime per process and a job-wide verdict.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include <unistd.h>

#include "tests/common/mpi_gtest.h"
#include "collectives/runtime.h"

namespace kolo::testing {

inline Runtime* g_runtime = nullptr;

// Runs every test with one Runtime; a failure on any rank fails the job on every rank.
inline int run_all_tests_distributed(int argc, char** argv) {
  return kolo::testing::run_all_tests_on_every_rank(argc, argv, g_runtime);
}

// A fresh directory for rank 0's checkpoints (other ranks never touch it). Removed by the destructor.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& tag) {
    path_ = (std::filesystem::temp_directory_path() / ("kolo_" + tag + "_" + std::to_string(::getpid()))).string();
    std::filesystem::remove_all(path_);
  }
  ~ScratchDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace kolo::testing
