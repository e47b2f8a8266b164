// The training programs' schedule flags (examples/common/run_setup.h): Goyal et al.'s warmup from the small-batch
// lr, and the combinations that cannot make a schedule refused before training starts.
#include <gtest/gtest.h>

#include "examples/common/run_setup.h"

namespace kolo::examples {
namespace {

TEST(MakeSchedule, GoyalWarmsUpFromTheSmallBatchLr) {
  ScheduleFlags f;
  f.name = "goyal";
  f.peak = 3.2;  // --lr 0.1 at a global batch of 8192
  f.warmup_from = 0.1;
  f.steps_per_epoch = 100;
  f.warmup_steps = 500;
  LrSchedulePtr s = make_schedule(f);
  EXPECT_DOUBLE_EQ((*s)(0), 0.1);
  EXPECT_DOUBLE_EQ((*s)(250), 0.1 + (3.2 - 0.1) / 2);
  EXPECT_DOUBLE_EQ((*s)(500), 3.2);
  EXPECT_NEAR((*s)(3000), 0.32, 1e-12);  // x0.1 from epoch 30
}

TEST(MakeSchedule, RefusesWhatCannotMakeASchedule) {
  ScheduleFlags f;
  f.name = "cosine";
  f.total_steps = 100;
  f.warmup_steps = 100;  // no step left to decay over
  EXPECT_THROW(make_schedule(f), Error);
  f.warmup_steps = 99;
  EXPECT_NO_THROW(make_schedule(f));
  f.peak = -0.1;
  EXPECT_THROW(make_schedule(f), Error);
  f.peak = 0.1;
  f.name = "inverse_sqrt";
  f.warmup_steps = 0;
  EXPECT_THROW(make_schedule(f), Error);
  f.name = "nonesuch";
  EXPECT_THROW(make_schedule(f), Error);
}

}  // namespace
}  // namespace kolo::examples
