// kolorun: start a kolo program on N ranks through mpirun or srun (see docs/launch.md).
#include <iostream>
#include <string>
#include <vector>

#include "core/util/error.h"
#include "launch/exec.h"
#include "launch/launch_plan.h"
#include "launch/options.h"

int main(int argc, char** argv) {
  using namespace kolo::launch;
  try {
    const CommandLine line = parse_command_line(std::vector<std::string>(argv + 1, argv + argc));
    if (line.help) {
      std::cout << usage() << "\nExample: kolorun -np 4 -H node1:2,node2:2 --bind-to socket ./train_resnet\n";
      return 0;
    }
    const LaunchPlan plan = build_launch_plan(line.options, local_launch_environment());
    if (line.verbose || line.dry_run) {
      for (const auto& note : plan.notes) std::cerr << "kolorun: " << note << "\n";
    }
    if (line.dry_run) {
      std::cout << format_command(plan) << "\n";
      return 0;
    }
    std::cerr.flush();
    exec_plan(plan);
  } catch (const kolo::Error& e) {
    std::cerr << e.what() << "\n";  // messages already start with "kolorun: "
    return 2;
  }
}
