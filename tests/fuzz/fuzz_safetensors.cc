// Fuzz target: decoding arbitrary bytes as safetensors either yields consistent tensors or throws Error.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    kolo::SafeTensors st = kolo::decode_safetensors(bytes, "fuzz.safetensors");
    for (const auto& [name, t] : st.tensors)
      if (static_cast<uint64_t>(t.nbytes()) > size) __builtin_trap();
  } catch (const kolo::Error&) {
  }
  return 0;
}
