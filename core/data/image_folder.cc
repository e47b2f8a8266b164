// ImageFolder scanning and transforms, and SyntheticImages.
#include "core/data/image_folder.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "core/tensor/tensor.h"
#include "core/util/error.h"

namespace kolo::data {
namespace fs = std::filesystem;

namespace {

bool is_image_name(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

}  // namespace

CropBox random_resized_crop_box(int64_t height, int64_t width, const ImageTransform& t, uint64_t key) {
  const double area = static_cast<double>(height) * width;
  const double log_r0 = std::log(t.ratio[0]), log_r1 = std::log(t.ratio[1]);
  // Up to 10 draws for a box that fits (torchvision's rule), then the centre crop of clamped aspect ratio.
  for (uint64_t attempt = 0; attempt < 10; ++attempt) {
    const double target = area * (t.scale[0] + (t.scale[1] - t.scale[0]) * Generator::uniform01(key, 4 * attempt));
    const double ratio = std::exp(log_r0 + (log_r1 - log_r0) * Generator::uniform01(key, 4 * attempt + 1));
    const double w = std::round(std::sqrt(target * ratio));
    const double h = std::round(std::sqrt(target / ratio));
    if (w > 0 && h > 0 && w <= width && h <= height) {
      const double y0 = std::floor(Generator::uniform01(key, 4 * attempt + 2) * (height - h + 1));
      const double x0 = std::floor(Generator::uniform01(key, 4 * attempt + 3) * (width - w + 1));
      return {y0, x0, h, w};
    }
  }
  const double in_ratio = static_cast<double>(width) / height;
  double w = width, h = height;
  if (in_ratio < t.ratio[0]) {
    h = std::round(w / t.ratio[0]);
  } else if (in_ratio > t.ratio[1]) {
    w = std::round(h * t.ratio[1]);
  }
  return {(height - h) / 2, (width - w) / 2, h, w};
}

void crop_resize_normalize(const DecodedImage& img, const CropBox& box, int64_t out_h, int64_t out_w, bool flip,
                           const std::array<float, 3>& mean, const std::array<float, 3>& stddev, float* out) {
  const double sy = box.h / out_h, sx = box.w / out_w;
  const int64_t plane = out_h * out_w;
  for (int64_t oy = 0; oy < out_h; ++oy) {
    // pixel-centre alignment (align_corners = false)
    const double fy = std::clamp(box.y0 + (oy + 0.5) * sy - 0.5, 0.0, static_cast<double>(img.height - 1));
    const auto y0 = static_cast<int64_t>(fy);
    const int64_t y1 = std::min(y0 + 1, img.height - 1);
    const float wy = static_cast<float>(fy - y0);
    for (int64_t ox = 0; ox < out_w; ++ox) {
      const double fx = std::clamp(box.x0 + (ox + 0.5) * sx - 0.5, 0.0, static_cast<double>(img.width - 1));
      const auto x0 = static_cast<int64_t>(fx);
      const int64_t x1 = std::min(x0 + 1, img.width - 1);
      const float wx = static_cast<float>(fx - x0);
      const int64_t dst = oy * out_w + (flip ? out_w - 1 - ox : ox);
      for (int c = 0; c < 3; ++c) {
        auto px = [&](int64_t y, int64_t x) { return static_cast<float>(img.rgb[(y * img.width + x) * 3 + c]); };
        const float top = px(y0, x0) + (px(y0, x1) - px(y0, x0)) * wx;
        const float bot = px(y1, x0) + (px(y1, x1) - px(y1, x0)) * wx;
        const float v = (top + (bot - top) * wy) / 255.0f;
        out[c * plane + dst] = (v - mean[c]) / stddev[c];
      }
    }
  }
}

ImageFolder::ImageFolder(const std::string& root, ImageTransform transform) : transform_(transform) {
  KOLO_CHECK(fs::is_directory(root), "ImageFolder: ", root, " is not a directory");
  KOLO_CHECK(transform.height > 0 && transform.width > 0, "ImageFolder: output size ", transform.height, "x",
             transform.width);
  for (const auto& entry : fs::directory_iterator(root))
    if (entry.is_directory()) classes_.push_back(entry.path().filename().string());
  std::sort(classes_.begin(), classes_.end());
  KOLO_CHECK(!classes_.empty(), "ImageFolder: ", root, " has no class subfolders");
  for (size_t c = 0; c < classes_.size(); ++c) {
    std::vector<std::string> names;
    for (const auto& entry : fs::recursive_directory_iterator(fs::path(root) / classes_[c]))
      if (entry.is_regular_file() && is_image_name(entry.path())) names.push_back(entry.path().string());
    std::sort(names.begin(), names.end());
    for (auto& n : names) {
      files_.push_back(std::move(n));
      labels_.push_back(static_cast<int64_t>(c));
    }
  }
  KOLO_CHECK(!files_.empty(), "ImageFolder: no .jpg/.jpeg/.png files under ", root);
}

int64_t ImageFolder::load(int64_t i, float* out, uint64_t aug_key) const {
  const DecodedImage img = decode_image_file(files_.at(i));
  KOLO_CHECK(img.height > 0 && img.width > 0, "ImageFolder: empty image ", files_[i]);
  const ImageTransform& t = transform_;
  if (t.train) {
    const CropBox box = random_resized_crop_box(img.height, img.width, t, aug_key);
    const bool flip = t.flip && Generator::uniform01(aug_key, 1000) < 0.5f;
    crop_resize_normalize(img, box, t.height, t.width, flip, t.mean, t.stddev, out);
  } else {
    // shorter side to resize_shorter, then a centre crop of the output size, done as one resample
    const double s = static_cast<double>(t.resize_shorter) / std::min(img.height, img.width);
    const double h = std::min<double>(t.height / s, img.height), w = std::min<double>(t.width / s, img.width);
    const CropBox box{(img.height - h) / 2, (img.width - w) / 2, h, w};
    crop_resize_normalize(img, box, t.height, t.width, false, t.mean, t.stddev, out);
  }
  return labels_[i];
}

int64_t SyntheticImages::load(int64_t i, float* out, uint64_t) const {
  KOLO_CHECK(i >= 0 && i < size_, "SyntheticImages::load: index ", i, " of ", size_);
  const uint64_t key = Generator::hash(seed_, static_cast<uint64_t>(i));
  const int64_t n = spec_.numel();
  for (int64_t k = 0; k < n; ++k) out[k] = Generator::normal(key, static_cast<uint64_t>(k) + 1);
  return static_cast<int64_t>(Generator::hash(key, 0) % static_cast<uint64_t>(num_classes_));
}

}  // namespace kolo::data
