// JPEG and PNG decoding. Both C libraries report errors by longjmp; each decode keeps everything that
// must be freed in plain C state and turns the jump into a kolo::Error only after cleanup.
#include "core/data/image_decode.h"

#include <csetjmp>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <fstream>

#include <jpeglib.h>
#include <png.h>

#include "core/util/error.h"

namespace kolo::data {
namespace {

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  KOLO_CHECK(in.good(), "cannot open image ", path, ": ", std::strerror(errno));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  KOLO_CHECK(!in.bad(), "error reading image ", path);
  return bytes;
}

struct JpegErrorManager {
  jpeg_error_mgr base;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_error_exit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// libjpeg treats a truncated stream as a warning and pads with grey; a training set should not silently
// contain half-grey images, so warnings (level -1) are fatal too. Trace messages (level > 0) are ignored.
void jpeg_emit_message(j_common_ptr cinfo, int level) {
  if (level < 0) jpeg_error_exit(cinfo);
}

// Returns false with `message` set on error; all libjpeg state is released before returning. `cmyk_row`: the
// caller's buffer for CMYK scanlines (no C++ object may live in this frame across the longjmp).
bool decode_jpeg_c(const std::vector<uint8_t>& bytes, DecodedImage* out, std::vector<uint8_t>* cmyk_row,
                   char* message) {
  jpeg_decompress_struct cinfo;
  JpegErrorManager err;
  cinfo.err = jpeg_std_error(&err.base);
  err.base.error_exit = jpeg_error_exit;
  err.base.emit_message = jpeg_emit_message;
  if (setjmp(err.jump)) {
    std::strcpy(message, err.message);
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&cinfo, TRUE);
  // Greyscale and YCbCr come out as RGB. libjpeg has no CMYK-to-RGB conversion (ImageNet holds a few dozen CMYK
  // JPEGs): those come out as CMYK and are converted below.
  const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  out->height = cinfo.output_height;
  out->width = cinfo.output_width;
  out->rgb.resize(static_cast<size_t>(out->height * out->width * 3));
  if (cmyk) cmyk_row->resize(static_cast<size_t>(out->width) * 4);
  // Adobe's (Photoshop's) CMYK JPEGs store inverted values, 255 meaning no ink.
  const bool inverted = cinfo.saw_Adobe_marker;
  while (cinfo.output_scanline < cinfo.output_height) {
    uint8_t* rgb = out->rgb.data() + static_cast<size_t>(cinfo.output_scanline) * out->width * 3;
    JSAMPROW row = cmyk ? cmyk_row->data() : rgb;
    jpeg_read_scanlines(&cinfo, &row, 1);
    if (!cmyk) continue;
    for (int64_t x = 0; x < out->width; ++x) {
      const uint8_t* p = row + 4 * x;
      const int k = inverted ? p[3] : 255 - p[3];
      for (int ch = 0; ch < 3; ++ch)
        rgb[3 * x + ch] = static_cast<uint8_t>(((inverted ? p[ch] : 255 - p[ch]) * k + 127) / 255);
    }
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

struct PngReadState {
  const std::vector<uint8_t>* bytes;
  size_t pos = 0;
  char message[256] = {0};
};

void png_read_bytes(png_structp png, png_bytep dst, png_size_t n) {
  auto* st = static_cast<PngReadState*>(png_get_io_ptr(png));
  if (st->pos + n > st->bytes->size()) png_error(png, "unexpected end of file (truncated PNG)");
  std::memcpy(dst, st->bytes->data() + st->pos, n);
  st->pos += n;
}

void png_on_error(png_structp png, png_const_charp msg) {
  auto* st = static_cast<PngReadState*>(png_get_error_ptr(png));
  std::snprintf(st->message, sizeof(st->message), "%s", msg);
  png_longjmp(png, 1);
}

void png_on_warning(png_structp, png_const_charp) {}

bool decode_png_c(const std::vector<uint8_t>& bytes, DecodedImage* out, char* message) {
  PngReadState st;
  st.bytes = &bytes;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &st, png_on_error, png_on_warning);
  if (!png) {
    std::strcpy(message, "png_create_read_struct failed");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  std::vector<png_bytep> rows;
  if (!info || setjmp(png_jmpbuf(png))) {
    std::snprintf(message, 256, "%s", info ? st.message : "png_create_info_struct failed");
    png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    return false;
  }
  png_set_read_fn(png, &st, png_read_bytes);
  png_read_info(png, info);
  // Normalise every PNG flavour to 8-bit RGB: expand palettes and low bit depths, drop alpha and 16 bits.
  const int color = png_get_color_type(png, info);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  if (png_get_bit_depth(png, info) == 16) png_set_strip_16(png);
  if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  png_set_strip_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  out->height = png_get_image_height(png, info);
  out->width = png_get_image_width(png, info);
  if (png_get_rowbytes(png, info) != static_cast<size_t>(out->width * 3)) png_error(png, "unexpected row layout");
  out->rgb.resize(static_cast<size_t>(out->height * out->width * 3));
  rows.resize(out->height);
  for (int64_t y = 0; y < out->height; ++y) rows[y] = out->rgb.data() + y * out->width * 3;
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

}  // namespace

DecodedImage decode_jpeg(const std::vector<uint8_t>& bytes, const std::string& path) {
  DecodedImage img;
  char message[JMSG_LENGTH_MAX] = {0};
  std::vector<uint8_t> cmyk_row;
  if (!decode_jpeg_c(bytes, &img, &cmyk_row, message)) KOLO_FAIL("bad JPEG ", path, ": ", message);
  return img;
}

DecodedImage decode_png(const std::vector<uint8_t>& bytes, const std::string& path) {
  DecodedImage img;
  char message[256] = {0};
  if (!decode_png_c(bytes, &img, message)) KOLO_FAIL("bad PNG ", path, ": ", message);
  return img;
}

DecodedImage decode_image_file(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file(path);
  if (bytes.size() >= 3 && bytes[0] == 0xff && bytes[1] == 0xd8 && bytes[2] == 0xff) return decode_jpeg(bytes, path);
  static const uint8_t kPngSig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), kPngSig, 8) == 0) return decode_png(bytes, path);
  KOLO_FAIL("image ", path, " (", bytes.size(), " bytes) is neither JPEG nor PNG");
}

}  // namespace kolo::data
