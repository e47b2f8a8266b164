// Shared main() pieces of the multi-rank training tests: one Runtime per process and a job-wide verdict.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include <unistd.h>

#include "collectives/runtime.h"

namespace kolo::testing {

inline Runtime* g_runtime = nullptr;

// Runs every test with one Runtime; a failure on any rank fails the job on every rank.
inline int run_all_tests_distributed(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  Runtime rt;
  g_runtime = &rt;
  const int local_failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  Tensor flag = Tensor::from_vector(std::vector<int32_t>{local_failed}, {1});
  AllreduceOptions o;
  o.op = ReduceOp::Max;
  rt.allreduce_async(flag, "__test_verdict", o).wait();
  const int failed = flag.to_vector<int32_t>()[0];
  rt.shutdown();
  g_runtime = nullptr;
  return failed;
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
