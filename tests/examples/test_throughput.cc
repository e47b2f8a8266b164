// ThroughputMeter's progress lines: global rates and the ETA extrapolated from the wall time per step; on a
// GPU, steps timed as the device ran them.
#include <gtest/gtest.h>

#include <chrono>
#include <regex>
#include <sstream>
#include <thread>

#include "core/device/device_backend.h"
#include "core/ops/linalg.h"
#include "examples/common/run_setup.h"
#include "examples/common/throughput.h"

namespace kolo::examples {
namespace {

TEST(ThroughputMeter, IntervalLinesCarryRateLossAndEta) {
  ThroughputMeter meter("images", /*ranks=*/2, /*warmup_steps=*/0);
  std::ostringstream os;
  meter.print_header(os);
  for (int step = 1; step <= 4; ++step) {
    meter.start_step();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    meter.end_step(8);
  }
  meter.print_interval(os, 4, 1.25, 104);
  const std::string text = os.str();
  EXPECT_NE(text.find("Step\timages/sec\ttotal_loss\tETA"), std::string::npos) << text;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(text, m, std::regex(R"(4\timages/sec: ([0-9.]+) .*\t1\.250\tETA (\d+)s\n)"))) << text;
  // 16 images per >= 20 ms step: at most 800 images/sec; 100 steps left at >= 20 ms each: at least 2 s.
  EXPECT_LE(std::stod(m[1]), 800.0);
  EXPECT_GT(std::stod(m[1]), 10.0);
  EXPECT_GE(std::stoi(m[2]), 2);

  meter.start_step();
  meter.end_step(8);
  std::ostringstream last;
  meter.print_interval(last, 104, 1.0, 104);
  EXPECT_NE(last.str().find("ETA 0s"), std::string::npos) << last.str();
  std::ostringstream total;
  meter.print_total(total);
  EXPECT_NE(total.str().find("total images/sec: "), std::string::npos) << total.str();
}

// The host only launches each step's GEMMs and runs ahead: timed on the host, every step would look tens of
// times faster than the device ran it (the progress lines of a CUDA-graph run read 186,000 images/sec). Host
// time between steps with the device idle (a checkpoint, the loader) is no step's, as on the CPU.
TEST(ThroughputMeter, GpuStepsAreTimedAsTheDeviceRanThem) {
  if (!device_available(DeviceType::CUDA)) GTEST_SKIP() << "no CUDA device visible";
  const Device gpu = Device::cuda(0);
  const Tensor a = Tensor::full({4096, 4096}, 0.001, DType::F32, gpu);
  Tensor c = matmul(a, a);  // cuBLAS set-up outside the timed steps
  synchronize_device(gpu);
  constexpr int kSteps = 8;
  auto interval_rate = [&](ThroughputMeter& meter, int pause_ms) {
    for (int step = 1; step <= kSteps; ++step) {
      meter.start_step();
      for (int i = 0; i < 4; ++i) c = matmul(a, c);
      meter.end_step(100);
      std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
    }
    std::ostringstream os;
    meter.print_interval(os, kSteps, 1.0, 2 * kSteps);
    std::smatch m;
    const std::string text = os.str();
    EXPECT_TRUE(std::regex_search(text, m, std::regex(R"(images/sec: ([0-9.]+) )"))) << text;
    return m.empty() ? 0.0 : std::stod(m[1]);
  };
  ThroughputMeter meter("images", /*ranks=*/1, /*warmup_steps=*/0, gpu);
  const auto t0 = std::chrono::steady_clock::now();
  const double back_to_back = interval_rate(meter, 0);
  const double wall_rate = kSteps * 100 / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GT(back_to_back, 0.6 * wall_rate);
  EXPECT_LT(back_to_back, 1.5 * wall_rate);
  // 50 ms pauses, several times a step's GEMMs: the same work, so about the same rate.
  const double paused = interval_rate(meter, 50);
  EXPECT_GT(paused, 0.6 * back_to_back);
  EXPECT_LT(paused, 1.5 * back_to_back);
  meter.drain([&] { synchronize_device(gpu); });
  EXPECT_EQ(meter.steps(), 2 * kSteps);
  EXPECT_GT(meter.total_rate(), 0.6 * wall_rate);
  EXPECT_LT(meter.total_rate(), 1.5 * wall_rate);
}

}  // namespace
}  // namespace kolo::examples
