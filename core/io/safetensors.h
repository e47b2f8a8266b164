// Reading and writing the safetensors format (8-byte little-endian header length, JSON header, raw
// little-endian tensor bytes), written by kolo itself. kolo adds a CRC-32 per tensor in the header's
// __metadata__ ("kolo.crc32.<name>") and verifies it on load when present.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/tensor/tensor.h"

namespace kolo {

struct SafeTensors {
  std::vector<std::pair<std::string, Tensor>> tensors;  // in file order
  std::map<std::string, std::string> metadata;          // user metadata (kolo's checksums removed)

  const Tensor* find(const std::string& name) const;
  const Tensor& at(const std::string& name) const;  // throws naming the missing tensor
};

// Serialises to bytes (CPU copies of the tensors are taken as needed).
std::string encode_safetensors(const std::vector<std::pair<std::string, Tensor>>& tensors,
                               const std::map<std::string, std::string>& metadata = {});
// Parses bytes; `source` names the file in every error. Rejects truncation, overlapping or out-of-range
// offsets, unknown dtypes, size mismatches and checksum failures.
SafeTensors decode_safetensors(const std::string& bytes, const std::string& source = "<memory>");

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
SafeTensors load_safetensors(const std::string& path);

// The safetensors dtype string ("F32", "BF16", "I64", ...) for a DType and back.
const char* safetensors_dtype(DType t);
DType dtype_from_safetensors(const std::string& s, const std::string& source);

}  // namespace kolo
