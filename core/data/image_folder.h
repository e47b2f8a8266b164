// ImageFolder: root/<class>/<image>.{jpg,jpeg,png}, classes in sorted order; decoded and augmented per load.
//
// Training transform (as torchvision's ImageNet recipe): random resized crop (area scale and aspect ratio
// drawn per sample), random horizontal flip, then per-channel normalisation. Evaluation transform: resize
// the shorter side to `resize_shorter` and centre-crop. Both resample bilinearly.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "core/data/image_decode.h"
#include "core/data/image_source.h"

namespace kolo::data {

struct ImageTransform {
  int64_t height = 224;
  int64_t width = 224;
  bool train = true;
  std::array<double, 2> scale{0.08, 1.0};            // area fraction of the random crop
  std::array<double, 2> ratio{3.0 / 4.0, 4.0 / 3.0};  // aspect ratio of the random crop
  bool flip = true;
  int64_t resize_shorter = 256;  // evaluation only
  std::array<float, 3> mean{0.485f, 0.456f, 0.406f};
  std::array<float, 3> stddev{0.229f, 0.224f, 0.225f};
};

// Crop box (in source pixels) of the training transform for one draw; exposed for tests.
struct CropBox {
  double y0, x0, h, w;
};
CropBox random_resized_crop_box(int64_t height, int64_t width, const ImageTransform& t, uint64_t key);

// Resamples `box` of `img` bilinearly to out_h x out_w, optionally mirrored, normalised, into f32 CHW.
void crop_resize_normalize(const DecodedImage& img, const CropBox& box, int64_t out_h, int64_t out_w, bool flip,
                           const std::array<float, 3>& mean, const std::array<float, 3>& stddev, float* out);

class ImageFolder : public ImageSource {
 public:
  ImageFolder(const std::string& root, ImageTransform transform);

  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  ImageSpec spec() const override { return {3, transform_.height, transform_.width}; }
  int64_t num_classes() const override { return static_cast<int64_t>(classes_.size()); }
  int64_t load(int64_t i, float* out, uint64_t aug_key) const override;

  const std::vector<std::string>& classes() const { return classes_; }
  const std::string& path(int64_t i) const { return files_.at(i); }
  int64_t label(int64_t i) const { return labels_.at(i); }

 private:
  ImageTransform transform_;
  std::vector<std::string> classes_;
  std::vector<std::string> files_;
  std::vector<int64_t> labels_;
};

// Random images for benchmarks (tf_cnn_benchmarks' synthetic input): item i is N(0,1) noise and a label,
// both a pure function of (seed, i), so any rank and worker reproduces it.
class SyntheticImages : public ImageSource {
 public:
  SyntheticImages(ImageSpec spec, int64_t num_classes, int64_t size, uint64_t seed = 0)
      : spec_(spec), num_classes_(num_classes), size_(size), seed_(seed) {}
  int64_t size() const override { return size_; }
  ImageSpec spec() const override { return spec_; }
  int64_t num_classes() const override { return num_classes_; }
  int64_t load(int64_t i, float* out, uint64_t aug_key) const override;

 private:
  ImageSpec spec_;
  int64_t num_classes_;
  int64_t size_;
  uint64_t seed_;
};

}  // namespace kolo::data
