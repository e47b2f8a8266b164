// KernelProfiler: kernels called through the slots are counted per name while it is on, nested kernels count
// once (in the outer one), nothing is recorded while it is off, and the table accounts for the span.
#include <gtest/gtest.h>

#include <algorithm>

#include "core/ops/elementwise.h"
#include "core/ops/kernel_profiler.h"
#include "core/ops/linalg.h"

namespace kolo {
namespace {

const KernelStat* find(const std::vector<KernelStat>& stats, const std::string& name) {
  auto it = std::find_if(stats.begin(), stats.end(), [&](const KernelStat& k) { return k.name == name; });
  return it == stats.end() ? nullptr : &*it;
}

TEST(KernelProfiler, CountsKernelCallsPerName) {
  Tensor a = Tensor::ones({64, 64}, DType::F32), b = Tensor::ones({64, 64}, DType::F32);
  add(a, b);  // warm-up outside the profiled span
  KernelProfiler::start();
  for (int i = 0; i < 3; ++i) add(a, b);
  matmul(a, b);
  const std::vector<KernelStat> stats = KernelProfiler::stop();
  int64_t total = 0;
  for (const KernelStat& k : stats) {
    EXPECT_GE(k.device_ms, 0.0) << k.name;
    EXPECT_TRUE(k.device.is_cpu()) << k.name;
    total += k.calls;
  }
  const KernelStat* gemm = find(stats, "gemm");
  ASSERT_NE(gemm, nullptr);
  EXPECT_EQ(gemm->calls, 1);
  EXPECT_GE(total, 4);  // three adds (whatever their kernel names) and the gemm
  const std::string table = KernelProfiler::format(stats, 1000.0);
  EXPECT_NE(table.find("gemm"), std::string::npos);
  EXPECT_NE(table.find("(outside kernels)"), std::string::npos);
}

TEST(KernelProfiler, RecordsNothingWhenOff) {
  Tensor a = Tensor::ones({8}, DType::F32);
  KernelProfiler::start();
  (void)KernelProfiler::stop();
  add(a, a);
  KernelProfiler::start();
  EXPECT_TRUE(KernelProfiler::stop().empty());
  EXPECT_FALSE(KernelProfiler::active());
}

TEST(KernelProfiler, NestedScopesCountOnce) {
  KernelProfiler::start();
  {
    KernelProfiler::Scope outer("outer", Device::cpu());
    KernelProfiler::Scope inner("inner", Device::cpu());
  }
  const std::vector<KernelStat> stats = KernelProfiler::stop();
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].name, "outer");
  EXPECT_EQ(stats[0].calls, 1);
}

}  // namespace
}  // namespace kolo
