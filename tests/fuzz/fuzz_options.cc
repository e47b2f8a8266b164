// Fuzz target: kolorun's command line. The input is split at NUL bytes into arguments; parsing either
// yields options or throws kolo::Error (unknown option, missing or malformed value), never crashes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/util/error.h"
#include "launch/options.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> args(1);
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0)
      args.emplace_back();
    else
      args.back().push_back(static_cast<char>(data[i]));
  }
  try {
    const kolo::launch::CommandLine cl = kolo::launch::parse_command_line(args);
    if (cl.help) kolo::launch::usage();
  } catch (const kolo::Error&) {
  }
  return 0;
}
