// Fuzz target: the JSON parser must either parse or throw kolo::Error, and parsed values must round-trip.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/util/error.h"
#include "core/util/json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const kolo::Json v = kolo::Json::parse(text);
    const std::string once = v.dump();
    if (kolo::Json::parse(once).dump() != once) __builtin_trap();
  } catch (const kolo::Error&) {
  }
  return 0;
}
