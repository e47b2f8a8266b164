// Fuzz target: IDX image/label files (MNIST format, gzipped or not). The first two input bytes give where
// the images file ends; the rest is the labels file. read_idx must return consistent images or throw
// kolo::Error naming the file.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "core/data/image_source.h"
#include "core/util/error.h"

namespace {

std::string write_file(const std::string& tag, const uint8_t* data, size_t size) {
  const std::string path = "/tmp/kolo_fuzz_idx_" + tag + "_" + std::to_string(::getpid());
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  size_t split = (size_t{data[0]} << 8) | data[1];
  data += 2;
  size -= 2;
  if (split > size) split = size;
  try {
    kolo::data::read_idx(write_file("images", data, split), write_file("labels", data + split, size - split));
  } catch (const kolo::Error&) {
  }
  return 0;
}
