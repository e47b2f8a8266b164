// kolorun's contact with the real machine: its environment, PATH lookups, files, and replacing itself with
// the launcher. Kept apart from launch_plan.h so the command construction stays pure.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "launch/launch_plan.h"

namespace kolo::launch {

// The process environment as a map.
std::map<std::string, std::string> current_environment();

// A name containing '/' must be an executable file; otherwise the first executable match in `path_var`
// (colon-separated, as PATH). Returns the path found.
std::optional<std::string> find_executable(const std::string& name, const std::string& path_var);

// Whole file contents; kolo::Error naming the file when it cannot be read.
std::string read_text_file(const std::string& path);

// This machine, this process: environment, uid, topology, resolver and file reader.
LaunchEnvironment local_launch_environment();

// Replaces this process with the plan's launcher (execve), so the launcher's exit status is kolorun's and
// signals reach it directly. Returns only by throwing kolo::Error when the exec fails.
[[noreturn]] void exec_plan(const LaunchPlan& plan);

}  // namespace kolo::launch
