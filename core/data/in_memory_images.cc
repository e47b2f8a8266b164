// InMemoryImages plus the readers that fill it: sklearn digits CSV and IDX (MNIST-format) files.
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "core/data/image_source.h"
#include "core/util/error.h"

namespace kolo::data {

InMemoryImages::InMemoryImages(ImageSpec spec, std::vector<uint8_t> pixels, std::vector<int64_t> labels,
                               float max_value, int64_t num_classes)
    : spec_(spec), pixels_(std::move(pixels)), labels_(std::move(labels)), max_value_(max_value),
      num_classes_(num_classes), mean_(spec.channels, 0.0f), std_(spec.channels, 1.0f) {
  KOLO_CHECK(static_cast<int64_t>(pixels_.size()) == spec.numel() * static_cast<int64_t>(labels_.size()),
             "InMemoryImages: ", pixels_.size(), " pixels for ", labels_.size(), " images of ", spec.channels,
             "x", spec.height, "x", spec.width);
  for (int64_t l : labels_)
    KOLO_CHECK(l >= 0 && l < num_classes, "InMemoryImages: label ", l, " outside [0, ", num_classes, ")");
}

int64_t InMemoryImages::load(int64_t i, float* out, uint64_t) const {
  KOLO_CHECK(i >= 0 && i < size(), "InMemoryImages::load: index ", i, " of ", size());
  const int64_t plane = spec_.height * spec_.width;
  const uint8_t* src = pixels_.data() + i * spec_.numel();
  for (int64_t c = 0; c < spec_.channels; ++c) {
    const float scale = 1.0f / (max_value_ * std_[c]);
    const float shift = mean_[c] / std_[c];
    for (int64_t k = 0; k < plane; ++k) out[c * plane + k] = src[c * plane + k] * scale - shift;
  }
  return labels_[i];
}

void InMemoryImages::set_normalization(std::vector<float> mean, std::vector<float> stddev) {
  KOLO_CHECK(static_cast<int64_t>(mean.size()) == spec_.channels && stddev.size() == mean.size(),
             "InMemoryImages::set_normalization: need ", spec_.channels, " means and stds, got ", mean.size(),
             " and ", stddev.size());
  for (float s : stddev) KOLO_CHECK(s > 0.0f, "InMemoryImages::set_normalization: std ", s, " must be > 0");
  mean_ = std::move(mean);
  std_ = std::move(stddev);
}

std::pair<std::vector<float>, std::vector<float>> InMemoryImages::channel_stats() const {
  const int64_t plane = spec_.height * spec_.width;
  std::vector<float> mean(spec_.channels), stddev(spec_.channels);
  for (int64_t c = 0; c < spec_.channels; ++c) {
    double s = 0.0, s2 = 0.0;
    for (int64_t i = 0; i < size(); ++i) {
      const uint8_t* p = pixels_.data() + i * spec_.numel() + c * plane;
      for (int64_t k = 0; k < plane; ++k) {
        const double v = p[k] / static_cast<double>(max_value_);
        s += v;
        s2 += v * v;
      }
    }
    const double n = static_cast<double>(size() * plane);
    const double m = n > 0 ? s / n : 0.0;
    mean[c] = static_cast<float>(m);
    stddev[c] = static_cast<float>(std::sqrt(std::max(n > 0 ? s2 / n - m * m : 1.0, 1e-12)));
  }
  return {mean, stddev};
}

InMemoryImages InMemoryImages::subset(const std::vector<int64_t>& indices) const {
  std::vector<uint8_t> pixels;
  std::vector<int64_t> labels;
  pixels.reserve(indices.size() * spec_.numel());
  for (int64_t i : indices) {
    KOLO_CHECK(i >= 0 && i < size(), "InMemoryImages::subset: index ", i, " of ", size());
    const uint8_t* p = pixels_.data() + i * spec_.numel();
    pixels.insert(pixels.end(), p, p + spec_.numel());
    labels.push_back(labels_[i]);
  }
  InMemoryImages out(spec_, std::move(pixels), std::move(labels), max_value_, num_classes_);
  out.set_normalization(mean_, std_);
  return out;
}

namespace {

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

// gzopen reads plain files transparently, so every reader here accepts both .gz and uncompressed input.
GzFile open_gz(const std::string& path) {
  GzFile f(gzopen(path.c_str(), "rb"));
  KOLO_CHECK(f != nullptr, "cannot open ", path, ": ", std::strerror(errno));
  return f;
}

void read_exact(gzFile f, const std::string& path, void* dst, size_t n, const char* what) {
  auto* p = static_cast<char*>(dst);
  size_t got = 0;
  while (got < n) {
    const size_t chunk = std::min<size_t>(n - got, 1u << 30);
    const int r = gzread(f, p + got, static_cast<unsigned>(chunk));
    if (r <= 0) {
      int errnum = 0;
      const char* msg = gzerror(f, &errnum);
      KOLO_FAIL(path, ": truncated or corrupt while reading ", what, " (", got, " of ", n, " bytes",
                errnum != Z_OK ? std::string(", zlib: ") + msg : std::string(), ")");
    }
    got += static_cast<size_t>(r);
  }
}

uint32_t read_be32(gzFile f, const std::string& path, const char* what) {
  unsigned char b[4];
  read_exact(f, path, b, 4, what);
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
}

}  // namespace

InMemoryImages load_sklearn_digits(const std::string& path) {
  GzFile f = open_gz(path);
  std::vector<uint8_t> pixels;
  std::vector<int64_t> labels;
  std::string line;
  char buf[4096];
  int64_t line_no = 0;
  while (gzgets(f.get(), buf, sizeof(buf)) != nullptr) {
    line = buf;
    ++line_no;
    KOLO_CHECK(!line.empty() && (line.back() == '\n' || gzeof(f.get())), path, ":", line_no, ": line too long");
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    if (line.empty()) continue;
    std::vector<double> values;
    const char* p = line.c_str();
    for (;;) {
      char* end = nullptr;
      const double v = std::strtod(p, &end);
      KOLO_CHECK(end != p, path, ":", line_no, ": expected a number at column ", p - line.c_str() + 1, " in '",
                 line, "'");
      values.push_back(v);
      p = end;
      if (*p == '\0') break;
      KOLO_CHECK(*p == ',', path, ":", line_no, ": expected ',' at column ", p - line.c_str() + 1);
      ++p;
    }
    KOLO_CHECK(values.size() == 65, path, ":", line_no, ": expected 64 pixels and a label, got ", values.size(),
               " values");
    for (int k = 0; k < 64; ++k) {
      KOLO_CHECK(values[k] >= 0 && values[k] <= 16 && values[k] == std::floor(values[k]), path, ":", line_no,
                 ": pixel ", k, " = ", values[k], " is not an integer in [0, 16]");
      pixels.push_back(static_cast<uint8_t>(values[k]));
    }
    KOLO_CHECK(values[64] >= 0 && values[64] <= 9 && values[64] == std::floor(values[64]), path, ":", line_no,
               ": label ", values[64], " is not a digit");
    labels.push_back(static_cast<int64_t>(values[64]));
  }
  int errnum = 0;
  const char* msg = gzerror(f.get(), &errnum);
  KOLO_CHECK(errnum == Z_OK || errnum == Z_STREAM_END, path, ": read error after line ", line_no, ": ", msg);
  KOLO_CHECK(!labels.empty(), path, ": no digits found");
  return InMemoryImages(ImageSpec{1, 8, 8}, std::move(pixels), std::move(labels), 16.0f, 10);
}

InMemoryImages read_idx(const std::string& images_path, const std::string& labels_path) {
  GzFile fi = open_gz(images_path);
  const uint32_t magic_i = read_be32(fi.get(), images_path, "magic");
  KOLO_CHECK(magic_i == 0x803, images_path, ": IDX magic 0x", std::hex, magic_i, " is not 0x803 (u8 images)");
  const uint32_t n = read_be32(fi.get(), images_path, "count");
  const uint32_t h = read_be32(fi.get(), images_path, "rows");
  const uint32_t w = read_be32(fi.get(), images_path, "columns");
  KOLO_CHECK(h > 0 && w > 0 && h <= 4096 && w <= 4096, images_path, ": implausible image size ", h, "x", w);
  // Buffers grow as data arrives, so a header announcing more than the file holds fails with "ends early"
  // instead of first allocating the announced size (found by fuzzing: 4.8 GB for a 30-byte file).
  auto read_grown = [](gzFile f, const std::string& path, size_t total, const char* what) {
    std::vector<uint8_t> out;
    for (size_t done = 0; done < total;) {
      const size_t chunk = std::min<size_t>(total - done, size_t{16} << 20);
      out.resize(done + chunk);
      read_exact(f, path, out.data() + done, chunk, what);
      done += chunk;
    }
    return out;
  };
  std::vector<uint8_t> pixels = read_grown(fi.get(), images_path, static_cast<size_t>(n) * h * w, "pixels");

  GzFile fl = open_gz(labels_path);
  const uint32_t magic_l = read_be32(fl.get(), labels_path, "magic");
  KOLO_CHECK(magic_l == 0x801, labels_path, ": IDX magic 0x", std::hex, magic_l, " is not 0x801 (u8 labels)");
  const uint32_t nl = read_be32(fl.get(), labels_path, "count");
  KOLO_CHECK(nl == n, labels_path, ": ", nl, " labels but ", images_path, " has ", n, " images");
  std::vector<uint8_t> raw = read_grown(fl.get(), labels_path, n, "labels");
  std::vector<int64_t> labels(raw.begin(), raw.end());
  int64_t classes = 0;
  for (int64_t l : labels) classes = std::max(classes, l + 1);
  return InMemoryImages(ImageSpec{1, static_cast<int64_t>(h), static_cast<int64_t>(w)}, std::move(pixels),
                        std::move(labels), 255.0f, std::max<int64_t>(classes, 10));
}

}  // namespace kolo::data
