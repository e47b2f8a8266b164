// Fuzz target: environment-knob and device/dtype parsers accept or reject with kolo::Error, never crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/device/device.h"
#include "core/tensor/dtype.h"
#include "core/util/env.h"
#include "core/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try { kolo::env::parse_int(text, "KOLO_FUZZ"); } catch (const kolo::Error&) {}
  try { kolo::env::parse_double(text, "KOLO_FUZZ"); } catch (const kolo::Error&) {}
  try { kolo::env::parse_bool(text, "KOLO_FUZZ"); } catch (const kolo::Error&) {}
  try { kolo::parse_device(text); } catch (const kolo::Error&) {}
  try { kolo::dtype_from_name(text); } catch (const kolo::Error&) {}
  return 0;
}
