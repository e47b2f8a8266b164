// ThroughputMeter's progress lines: global rates and the ETA extrapolated from the wall time per step.
#include <gtest/gtest.h>

#include <chrono>
#include <regex>
#include <sstream>
#include <thread>

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

}  // namespace
}  // namespace kolo::examples
