// StepTimeline on the CPU: a step's phases land on the timeline's "step" row, in order, back to back, each as
// long as it ran. (The CUDA variant, events placed on the host clock, runs in the GPU programs' timelines.)
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "examples/common/step_timeline.h"

namespace kolo::examples {
namespace {

TEST(StepTimeline, PhasesAreContiguousSpansOnTheStepRow) {
  const std::string path = ::testing::TempDir() + "kolo_step_timeline.json";
  {
    Config c = Config::from_env();
    c.timeline = path;
    Runtime rt(c);
    StepTimeline tl(rt, Device::cpu());
    ASSERT_TRUE(tl.enabled());
    for (int step = 0; step < 2; ++step) {
      tl.mark("FORWARD");
      std::this_thread::sleep_for(std::chrono::milliseconds(3));
      tl.mark("BACKWARD");
      std::this_thread::sleep_for(std::chrono::milliseconds(6));
      tl.mark("EXCHANGE_WAIT_AND_UPDATE");
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      tl.end_step();
    }
  }
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  const std::string json = text.str();
  std::smatch row;
  ASSERT_TRUE(std::regex_search(json, row, std::regex(R"re("pid":\s*(\d+)[^}]*"args":\s*\{"name":\s*"step"\})re")))
      << json;
  const std::regex span(R"re(\{"name":\s*"([A-Z_]+)",\s*"ph":\s*"X",\s*"pid":\s*)re" + row[1].str() +
                        R"re(,[^}]*"ts":\s*(\d+),\s*"dur":\s*(\d+))re");
  std::vector<std::string> names;
  std::vector<long long> ts, dur;
  for (auto it = std::sregex_iterator(json.begin(), json.end(), span); it != std::sregex_iterator(); ++it) {
    names.push_back((*it)[1]);
    ts.push_back(std::stoll((*it)[2]));
    dur.push_back(std::stoll((*it)[3]));
  }
  ASSERT_EQ(names.size(), 6u) << json;
  const char* want[] = {"FORWARD", "BACKWARD", "EXCHANGE_WAIT_AND_UPDATE"};
  const long long min_us[] = {3000, 6000, 2000};
  for (size_t i = 0; i < names.size(); ++i) {
    EXPECT_EQ(names[i], want[i % 3]) << i;
    EXPECT_GE(dur[i], min_us[i % 3]) << names[i];
    if (i % 3 != 2) EXPECT_EQ(ts[i] + dur[i], ts[i + 1]) << "phases " << i << " and " << i + 1 << " are not adjacent";
  }
  std::remove(path.c_str());
}

}  // namespace
}  // namespace kolo::examples
