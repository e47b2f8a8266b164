// Fuzz target for the data parsers: JPEG/PNG decoding, BPE model files and TSV sentence-pair files. The
// first input byte picks the parser; every failure must be a kolo::Error naming the file.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "core/data/bpe.h"
#include "core/data/image_decode.h"
#include "core/data/text_corpus.h"
#include "core/util/error.h"

namespace {

std::string scratch_file(const uint8_t* data, size_t size) {
  const std::string path = "/tmp/kolo_fuzz_data_" + std::to_string(::getpid());
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t which = data[0] % 4;
  ++data;
  --size;
  try {
    if (which == 0) {
      kolo::data::decode_jpeg(std::vector<uint8_t>(data, data + size), "fuzz.jpg");
    } else if (which == 1) {
      kolo::data::decode_png(std::vector<uint8_t>(data, data + size), "fuzz.png");
    } else if (which == 2) {
      const auto tok = kolo::data::BpeTokenizer::load(scratch_file(data, size));
      tok.decode(tok.encode("fuzzing the tokenizer"));
    } else {
      kolo::data::read_tsv_pairs(scratch_file(data, size));
    }
  } catch (const kolo::Error&) {
  }
  return 0;
}
