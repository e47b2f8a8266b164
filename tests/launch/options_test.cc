// kolorun argument parsing: kolorun's options end where the program begins.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/util/error.h"
#include "launch/options.h"

namespace kolo::launch {
namespace {

using Args = std::vector<std::string>;

TEST(Options, MpirunSpellingAndProgramArgumentsPassThrough) {
  const CommandLine c =
      parse_command_line({"-np", "4", "-H", "a:2,b:2", "--bind-to", "socket", "./train", "--batch", "32", "-np", "9"});
  EXPECT_EQ(c.options.np, 4);
  EXPECT_EQ(c.options.host_list, "a:2,b:2");
  EXPECT_EQ(c.options.binding, Binding::Socket);
  EXPECT_EQ(c.options.command, (Args{"./train", "--batch", "32", "-np", "9"}));
  EXPECT_FALSE(c.dry_run);
}

TEST(Options, EqualsFormsFlagsAndDoubleDash) {
  const CommandLine c = parse_command_line({"--np=2", "--dry-run", "-v", "--oversubscribe", "-x", "A=1,2", "--env", "B",
                                            "--launcher-args", "--mca btl self,vader", "--ppn=1",
                                            "--omp-threads", "3", "--launcher=srun", "--", "-weird-program"});
  EXPECT_EQ(c.options.np, 2);
  EXPECT_TRUE(c.dry_run);
  EXPECT_TRUE(c.verbose);
  EXPECT_TRUE(c.options.oversubscribe);
  EXPECT_EQ(c.options.env, (Args{"A=1,2", "B"}));
  EXPECT_EQ(c.options.launcher_args, (Args{"--mca", "btl", "self,vader"}));
  EXPECT_EQ(c.options.ppn, 1);
  EXPECT_EQ(c.options.omp_threads, 3);
  EXPECT_EQ(c.options.launcher, Launcher::Srun);
  EXPECT_EQ(c.options.command, (Args{"-weird-program"}));
}

TEST(Options, HelpNeedsNoProgram) {
  EXPECT_TRUE(parse_command_line({"--help"}).help);
  EXPECT_NE(usage().find("--bind-to"), std::string::npos);
}

TEST(Options, BadInputIsAnError) {
  EXPECT_THROW(parse_command_line({"--bind-to", "sideways", "prog"}), Error);
  EXPECT_THROW(parse_command_line({"--launcher", "ssh", "prog"}), Error);
  EXPECT_THROW(parse_command_line({"-n4", "prog"}), Error);
  EXPECT_THROW(parse_command_line({"--frobnicate", "1", "prog"}), Error);
  EXPECT_THROW(parse_command_line({"-np"}), Error);
  EXPECT_THROW(parse_command_line({"-np", "four", "prog"}), Error);
}

}  // namespace
}  // namespace kolo::launch
