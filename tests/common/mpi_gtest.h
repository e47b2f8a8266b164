// Shared main() body of the multi-rank gtest binaries run under mpirun: one Runtime for all tests, then every
// rank agrees on one verdict (a Max allreduce of the local failure flag), so a failure on any rank fails the
// job on every rank and no rank exits early leaving the others blocked.
#pragma once

#include <gtest/gtest.h>

#include <vector>

#include "collectives/runtime.h"

namespace kolo::testing {

// `runtime` points at the live Runtime while the tests run (tests reach it through that pointer).
inline int run_all_tests_on_every_rank(int argc, char** argv, Runtime*& runtime) {
  ::testing::InitGoogleTest(&argc, argv);
  Runtime rt;
  runtime = &rt;
  const int local_failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  Tensor flag = Tensor::from_vector(std::vector<int32_t>{local_failed}, {1});
  AllreduceOptions o;
  o.op = ReduceOp::Max;
  rt.allreduce_async(flag, "__test_verdict", o).wait();
  const int failed = flag.to_vector<int32_t>()[0];
  rt.shutdown();
  runtime = nullptr;
  return failed;
}

}  // namespace kolo::testing
