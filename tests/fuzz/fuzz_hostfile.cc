// Fuzz target: kolorun's hostfile parser accepts or rejects with kolo::Error, never crashes.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/util/error.h"
#include "launch/hostfile.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    kolo::launch::parse_hostfile(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz-hostfile");
  } catch (const kolo::Error&) {
  }
  return 0;
}
