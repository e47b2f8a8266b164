// Decodes JPEG (libjpeg-turbo) and PNG (libpng) files into 8-bit RGB, HWC; a damaged file is a kolo::Error.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kolo::data {

struct DecodedImage {
  int64_t height = 0;
  int64_t width = 0;
  std::vector<uint8_t> rgb;  // height * width * 3
};

// Picks the decoder from the file's magic bytes, not its name. Truncated or corrupt data (including
// what libjpeg only warns about, e.g. "Premature end of JPEG file") throws with the path.
DecodedImage decode_image_file(const std::string& path);
DecodedImage decode_jpeg(const std::vector<uint8_t>& bytes, const std::string& path);
DecodedImage decode_png(const std::vector<uint8_t>& bytes, const std::string& path);

}  // namespace kolo::data
