// ImageSource: random access to labelled images as f32 CHW, the interface every image data set implements.
//
// load() must be thread safe: a loader calls it from several worker threads at once. Augmentation draws
// come from `aug_key` (derived from seed, epoch and item), never from thread-local state, so a batch is
// the same whatever the number of workers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kolo::data {

struct ImageSpec {
  int64_t channels = 0;
  int64_t height = 0;
  int64_t width = 0;
  int64_t numel() const { return channels * height * width; }
};

class ImageSource {
 public:
  virtual ~ImageSource() = default;
  virtual int64_t size() const = 0;
  virtual ImageSpec spec() const = 0;
  virtual int64_t num_classes() const = 0;
  // Writes item i (spec().numel() floats, CHW) into `out` and returns its label.
  virtual int64_t load(int64_t i, float* out, uint64_t aug_key) const = 0;
};

// Images held in memory as u8 (digits, IDX files): value / max_value, then (x - mean[c]) / std[c].
class InMemoryImages : public ImageSource {
 public:
  InMemoryImages(ImageSpec spec, std::vector<uint8_t> pixels, std::vector<int64_t> labels, float max_value,
                 int64_t num_classes);

  int64_t size() const override { return static_cast<int64_t>(labels_.size()); }
  ImageSpec spec() const override { return spec_; }
  int64_t num_classes() const override { return num_classes_; }
  int64_t load(int64_t i, float* out, uint64_t aug_key) const override;

  // Per-channel normalisation applied after scaling to [0, 1]; defaults to mean 0, std 1.
  void set_normalization(std::vector<float> mean, std::vector<float> stddev);
  // Mean and std of the scaled pixels per channel (to normalise with training-set statistics).
  std::pair<std::vector<float>, std::vector<float>> channel_stats() const;
  // The items `indices`, in that order, as a new set (keeps the normalisation).
  InMemoryImages subset(const std::vector<int64_t>& indices) const;

  const std::vector<uint8_t>& pixels() const { return pixels_; }
  const std::vector<int64_t>& labels() const { return labels_; }

 private:
  ImageSpec spec_;
  std::vector<uint8_t> pixels_;
  std::vector<int64_t> labels_;
  float max_value_;
  int64_t num_classes_;
  std::vector<float> mean_, std_;
};

// scikit-learn's digits: CSV (optionally gzipped) of 64 values 0..16 then the label, 8x8 greyscale.
inline constexpr const char* kSklearnDigitsPath = "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz";
InMemoryImages load_sklearn_digits(const std::string& path = kSklearnDigitsPath);

// IDX files (MNIST, Fashion-MNIST), gzipped or not: images u8 [N, H, W] (magic 0x803), labels u8 [N] (0x801).
InMemoryImages read_idx(const std::string& images_path, const std::string& labels_path);
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

}  // namespace kolo::data
