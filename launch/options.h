// kolorun's command line: splitting kolorun's own options from the program to run, and parsing them.
#pragma once

#include <string>
#include <vector>

#include "launch/launch_plan.h"

namespace kolo::launch {

struct CommandLine {
  LaunchOptions options;
  bool dry_run = false;
  bool verbose = false;
  bool help = false;
};

// Parses kolorun's arguments (argv without argv[0]). kolorun's options come first; the first word that is
// not an option (or everything after `--`) is the program and its arguments, passed through untouched, so
// `kolorun -np 2 ./train --batch 32` gives --batch to ./train. mpirun's spelling `-np` is accepted.
// A malformed or unknown option is a kolo::Error.
CommandLine parse_command_line(const std::vector<std::string>& args);

std::string usage();

}  // namespace kolo::launch
