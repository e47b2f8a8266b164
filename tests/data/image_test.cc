// Image data: digits CSV and IDX parsing, JPEG/PNG decoding (bad files named in errors), ImageFolder
// transforms, and ImageLoader sharding, determinism, checkpoint position and error propagation.
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>

#include <jpeglib.h>
#include <png.h>
#include <unistd.h>
#include <zlib.h>

#include <gtest/gtest.h>

#include "core/data/image_decode.h"
#include "core/data/image_folder.h"
#include "core/data/image_loader.h"
#include "core/data/image_source.h"
#include "core/util/error.h"

namespace kolo::data {
namespace {
namespace fs = std::filesystem;

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("kolo_data_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

void write_file(const fs::path& p, const std::string& s) {
  std::ofstream(p, std::ios::binary) << s;
}

// A w x h RGB gradient whose colour depends on `tint`, so classes are distinguishable.
std::vector<uint8_t> gradient(int w, int h, int tint) {
  std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &rgb[(static_cast<size_t>(y) * w + x) * 3];
      p[0] = static_cast<uint8_t>(x * 255 / std::max(1, w - 1));
      p[1] = static_cast<uint8_t>(y * 255 / std::max(1, h - 1));
      p[2] = static_cast<uint8_t>(tint);
    }
  return rgb;
}

// `pixels`: h rows of w pixels of `components` bytes in `space` (libjpeg's defaults pick the stored space).
void write_jpeg_pixels(const fs::path& path, int w, int h, const std::vector<uint8_t>& pixels, int components,
                       J_COLOR_SPACE space, int quality) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  jpeg_stdio_dest(&c, f);
  c.image_width = w;
  c.image_height = h;
  c.input_components = components;
  c.in_color_space = space;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, quality, TRUE);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(&pixels[static_cast<size_t>(c.next_scanline) * w * components]);
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  std::fclose(f);
}

void write_jpeg(const fs::path& path, int w, int h, int tint) {
  write_jpeg_pixels(path, w, h, gradient(w, h, tint), 3, JCS_RGB, 95);
}

void write_png(const fs::path& path, int w, int h, int tint) {
  const auto rgb = gradient(w, h, tint);
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_init_io(png, f);
  png_set_IHDR(png, info, w, h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < h; ++y) png_write_row(png, &rgb[static_cast<size_t>(y) * w * 3]);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  std::fclose(f);
}

void truncate_file(const fs::path& p, double keep) {
  std::ifstream in(p, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_file(p, s.substr(0, static_cast<size_t>(s.size() * keep)));
}

template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Digits, ParsesSklearnCsv) {
  if (!fs::exists(kSklearnDigitsPath)) GTEST_SKIP() << "python3-sklearn not installed";
  InMemoryImages d = load_sklearn_digits();
  EXPECT_EQ(d.size(), 1797);
  EXPECT_EQ(d.spec().channels, 1);
  EXPECT_EQ(d.spec().height, 8);
  std::vector<int> per_class(10, 0);
  for (int64_t l : d.labels()) ++per_class.at(l);
  for (int c : per_class) EXPECT_GT(c, 170);
  EXPECT_EQ(d.labels()[0], 0);  // first row of the file ends in 0 and starts 0,0,5,13
  std::vector<float> img(64);
  d.load(0, img.data(), 0);
  EXPECT_FLOAT_EQ(img[2], 5.0f / 16.0f);
  EXPECT_FLOAT_EQ(img[3], 13.0f / 16.0f);
}

TEST(Digits, BadLineNamesPathAndLine) {
  const fs::path dir = temp_dir("digits");
  std::string good;
  for (int k = 0; k < 64; ++k) good += "1,";
  good += "3\n";
  write_file(dir / "d.csv", good + good + "1,2,x\n");
  const std::string msg = error_of([&] { load_sklearn_digits((dir / "d.csv").string()); });
  EXPECT_NE(msg.find((dir / "d.csv").string() + ":3"), std::string::npos) << msg;
  write_file(dir / "e.csv", good + "1,2,3\n");
  EXPECT_NE(error_of([&] { load_sklearn_digits((dir / "e.csv").string()); }).find(":2: expected 64 pixels"),
            std::string::npos);
  fs::remove_all(dir);
}

void write_gz(const fs::path& p, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(p.c_str(), "wb");
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
}

std::vector<uint8_t> be32(uint32_t v) {
  return {static_cast<uint8_t>(v >> 24), static_cast<uint8_t>(v >> 16), static_cast<uint8_t>(v >> 8),
          static_cast<uint8_t>(v)};
}

TEST(Idx, ReadsAndRejectsTruncated) {
  const fs::path dir = temp_dir("idx");
  std::vector<uint8_t> images, labels;
  for (auto v : {be32(0x803), be32(3), be32(2), be32(2)}) images.insert(images.end(), v.begin(), v.end());
  for (int k = 0; k < 12; ++k) images.push_back(static_cast<uint8_t>(k * 20));
  for (auto v : {be32(0x801), be32(3)}) labels.insert(labels.end(), v.begin(), v.end());
  for (uint8_t l : {4, 0, 9}) labels.push_back(l);
  write_gz(dir / "img.gz", images);
  write_gz(dir / "lab.gz", labels);
  InMemoryImages d = read_idx((dir / "img.gz").string(), (dir / "lab.gz").string());
  EXPECT_EQ(d.size(), 3);
  EXPECT_EQ(d.labels(), (std::vector<int64_t>{4, 0, 9}));
  std::vector<float> px(4);
  d.load(1, px.data(), 0);
  EXPECT_FLOAT_EQ(px[3], 140.0f / 255.0f);
  images.resize(images.size() - 3);
  write_gz(dir / "short.gz", images);
  const std::string msg = error_of([&] { read_idx((dir / "short.gz").string(), (dir / "lab.gz").string()); });
  EXPECT_NE(msg.find("short.gz: truncated"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { read_idx((dir / "lab.gz").string(), (dir / "lab.gz").string()); }).find("magic"),
            std::string::npos);
  fs::remove_all(dir);
}

TEST(Idx, FashionMnistTestSet) {
  const std::string dir = kFashionMnistDir;
  if (!fs::exists(dir + "/t10k-images-idx3-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  InMemoryImages d = read_idx(dir + "/t10k-images-idx3-ubyte.gz", dir + "/t10k-labels-idx1-ubyte.gz");
  EXPECT_EQ(d.size(), 10000);
  EXPECT_EQ(d.spec().height, 28);
  EXPECT_EQ(d.num_classes(), 10);
  std::vector<int> per_class(10, 0);
  for (int64_t l : d.labels()) ++per_class.at(l);
  for (int c : per_class) EXPECT_EQ(c, 1000);
}

TEST(Decode, JpegAndPngRoundTrip) {
  const fs::path dir = temp_dir("decode");
  write_jpeg(dir / "a.jpg", 40, 30, 200);
  write_png(dir / "b.png", 40, 30, 200);
  const DecodedImage j = decode_image_file((dir / "a.jpg").string());
  const DecodedImage p = decode_image_file((dir / "b.png").string());
  EXPECT_EQ(j.height, 30);
  EXPECT_EQ(j.width, 40);
  EXPECT_EQ(p.rgb, gradient(40, 30, 200));
  int max_diff = 0;
  for (size_t k = 0; k < j.rgb.size(); ++k) max_diff = std::max(max_diff, std::abs(j.rgb[k] - p.rgb[k]));
  EXPECT_LT(max_diff, 24);  // JPEG at quality 95 on a smooth gradient
  fs::remove_all(dir);
}

// A CMYK JPEG as Photoshop writes them (Adobe marker, inverted values: 255 is no ink): libjpeg cannot convert it
// to RGB itself, so the decoder does. A flat red and a flat 50% grey, written by libjpeg from inverted CMYK.
TEST(Decode, AdobeCmykJpeg) {
  const fs::path dir = temp_dir("cmyk");
  const int w = 16, h = 8;
  std::vector<uint8_t> cmyk;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const bool red = x < w / 2;  // red: no cyan, full magenta and yellow, no black; grey: black at half
      for (int v : red ? std::vector<int>{255, 0, 0, 255} : std::vector<int>{255, 255, 255, 128})
        cmyk.push_back(static_cast<uint8_t>(v));
    }
  write_jpeg_pixels(dir / "cmyk.jpg", w, h, cmyk, 4, JCS_CMYK, 100);  // stored as YCCK with an Adobe marker
  const DecodedImage img = decode_image_file((dir / "cmyk.jpg").string());
  ASSERT_EQ(img.width, w);
  ASSERT_EQ(img.height, h);
  auto near = [&](int x, int y, std::vector<int> want) {
    for (int ch = 0; ch < 3; ++ch)
      EXPECT_NEAR(img.rgb[(static_cast<size_t>(y) * w + x) * 3 + ch], want[ch], 6) << x << "," << y << " ch " << ch;
  };
  near(2, 3, {255, 0, 0});
  near(12, 3, {128, 128, 128});
  fs::remove_all(dir);
}

TEST(Decode, TruncatedAndGarbageFilesThrowWithPath) {
  const fs::path dir = temp_dir("bad");
  write_jpeg(dir / "cut.jpg", 64, 64, 10);
  truncate_file(dir / "cut.jpg", 0.5);
  write_png(dir / "cut.png", 64, 64, 10);
  truncate_file(dir / "cut.png", 0.5);
  write_file(dir / "junk.jpg", "not an image at all");
  for (const char* name : {"cut.jpg", "cut.png", "junk.jpg"}) {
    const std::string path = (dir / name).string();
    const std::string msg = error_of([&] { decode_image_file(path); });
    EXPECT_NE(msg.find(path), std::string::npos) << name << ": " << msg;
  }
  const std::string skimage = "/usr/lib/python3/dist-packages/skimage/data/truncated.jpg";
  if (fs::exists(skimage)) EXPECT_NE(error_of([&] { decode_image_file(skimage); }).find("truncated.jpg"), std::string::npos);
  fs::remove_all(dir);
}

TEST(ImageFolder, TransformsAndClasses) {
  const fs::path dir = temp_dir("folder");
  fs::create_directories(dir / "cat");
  fs::create_directories(dir / "dog");
  write_jpeg(dir / "cat" / "1.jpg", 64, 48, 0);
  write_png(dir / "cat" / "2.PNG", 50, 70, 0);
  write_jpeg(dir / "dog" / "1.jpeg", 80, 60, 255);
  write_file(dir / "dog" / "notes.txt", "ignored");
  ImageTransform t;
  t.height = t.width = 16;
  t.mean = {0, 0, 0};
  t.stddev = {1, 1, 1};
  ImageFolder train((dir).string(), t);
  EXPECT_EQ(train.size(), 3);
  EXPECT_EQ(train.classes(), (std::vector<std::string>{"cat", "dog"}));
  std::vector<float> a(3 * 16 * 16), b(a.size());
  EXPECT_EQ(train.load(2, a.data(), 1), 1);
  EXPECT_NEAR(a[2 * 256 + 5], 1.0f, 0.06f);  // blue channel of the dog tint
  train.load(2, b.data(), 1);
  EXPECT_EQ(a, b);                           // same key, same augmentation
  bool differs = false;
  for (uint64_t key = 2; key < 6 && !differs; ++key) {
    train.load(2, b.data(), key);
    differs = a != b;
  }
  EXPECT_TRUE(differs);
  for (uint64_t key = 0; key < 50; ++key) {
    const CropBox box = random_resized_crop_box(48, 64, t, key);
    EXPECT_GE(box.y0, 0);
    EXPECT_GE(box.x0, 0);
    EXPECT_LE(box.y0 + box.h, 48);
    EXPECT_LE(box.x0 + box.w, 64);
    EXPECT_GE(box.h * box.w, 0.08 * 48 * 64 * 0.9);
  }
  t.train = false;
  ImageFolder eval(dir.string(), t);
  eval.load(0, a.data(), 1);
  eval.load(0, b.data(), 99);
  EXPECT_EQ(a, b);  // no randomness in evaluation
  // The red channel grows left to right in the source; centre crop keeps that order.
  EXPECT_LT(a[8 * 16 + 1], a[8 * 16 + 14]);
  fs::remove_all(dir);
}

// Label == item index, so batches reveal exactly which items a rank saw.
std::shared_ptr<InMemoryImages> indexed_images(int64_t n) {
  std::vector<uint8_t> px(n * 4);
  for (int64_t i = 0; i < n; ++i) px[i * 4] = static_cast<uint8_t>(i % 256);
  std::vector<int64_t> labels(n);
  std::iota(labels.begin(), labels.end(), 0);
  return std::make_shared<InMemoryImages>(ImageSpec{1, 2, 2}, px, labels, 255.0f, n);
}

// Exact shards, also of fewer items than ranks (a small held-out set: the last rank evaluates nothing).
TEST(ImageLoader, ShardsCoverEachItemOncePerEpoch) {
  for (const auto& [n, size] : std::vector<std::pair<int64_t, int>>{{101, 1}, {101, 2}, {101, 3}, {101, 4}, {3, 4}}) {
    auto src = indexed_images(n);
    std::vector<int> seen(n, 0);
    for (int rank = 0; rank < size; ++rank) {
      ImageLoaderOptions o;
      o.batch_size = 8;
      o.drop_last = false;
      o.shard = {rank, size, 9, true, ShardMode::kExact};
      o.num_workers = 2;
      ImageLoader loader(src, o);
      int64_t batches = 0;
      while (auto b = loader.next()) {
        ++batches;
        EXPECT_EQ(b->images.shape(), (Shape{b->labels.size(0), 1, 2, 2}));
        for (int64_t l : b->labels.to_vector<int64_t>()) ++seen[l];
      }
      EXPECT_EQ(batches, loader.batches_per_epoch());
      EXPECT_EQ(loader.state(), (LoaderState{1, 0}));
    }
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(seen[i], 1) << "size " << size << " item " << i;
  }
}

// A training loader with no batch per epoch is refused: the training loop would ask for the next one for ever.
TEST(ImageLoader, RefusesATrainingShardWithoutABatch) {
  ImageLoaderOptions o;
  o.batch_size = 4;
  o.shard = {0, 1, 0, true, ShardMode::kEven};
  EXPECT_THROW(ImageLoader(indexed_images(0), o), Error);
  EXPECT_THROW(ImageLoader(indexed_images(3), o), Error);  // drop_last: less than one batch
  o.drop_last = false;
  o.shard.mode = ShardMode::kExact;
  EXPECT_NO_THROW(ImageLoader(indexed_images(0), o));  // evaluation of nothing is nothing
}

TEST(ImageLoader, DeterministicAndResumable) {
  auto src = indexed_images(64);
  ImageLoaderOptions o;
  o.batch_size = 4;
  o.shard = {1, 2, 3, true, ShardMode::kEven};
  auto collect = [&](ImageLoader& l, int count) {
    std::vector<std::vector<int64_t>> out;
    while (static_cast<int>(out.size()) < count) {
      auto b = l.next();
      if (b) out.push_back(b->labels.to_vector<int64_t>());
    }
    return out;
  };
  ImageLoader a(src, o), b(src, o);
  const auto first = collect(a, 20);  // crosses into the third epoch (8 batches per epoch)
  EXPECT_EQ(collect(b, 20), first);
  EXPECT_NE(first[0], first[8]);  // epochs are shuffled differently
  ImageLoader c(src, o);
  collect(c, 5);
  const LoaderState saved = c.state();
  EXPECT_EQ(saved, (LoaderState{0, 5}));
  const auto after = collect(c, 6);
  ImageLoader d(src, o);
  d.set_state(saved);
  EXPECT_EQ(collect(d, 6), after);
  EXPECT_THROW(d.set_state({0, 99}), Error);
}

TEST(ImageLoader, BadFileSurfacesOnNextWithPath) {
  const fs::path dir = temp_dir("loaderbad");
  fs::create_directories(dir / "a");
  for (int k = 0; k < 5; ++k) write_jpeg(dir / "a" / (std::to_string(k) + ".jpg"), 20, 20, 0);
  truncate_file(dir / "a" / "3.jpg", 0.4);
  ImageTransform t;
  t.height = t.width = 8;
  ImageLoaderOptions o;
  o.batch_size = 5;
  o.shard.shuffle = false;
  ImageLoader loader(std::make_shared<ImageFolder>(dir.string(), t), o);
  const std::string msg = error_of([&] { loader.next(); });
  EXPECT_NE(msg.find((dir / "a" / "3.jpg").string()), std::string::npos) << msg;
  fs::remove_all(dir);
}

TEST(ImageLoader, WorkerCountDoesNotChangeBatches) {
  const fs::path dir = temp_dir("workers");
  for (const char* c : {"a", "b"}) {
    fs::create_directories(dir / c);
    for (int k = 0; k < 6; ++k) write_jpeg(dir / c / (std::to_string(k) + ".jpg"), 24 + k, 20 + 2 * k, c[0] == 'a' ? 0 : 255);
  }
  ImageTransform t;
  t.height = t.width = 12;
  auto src = std::make_shared<ImageFolder>(dir.string(), t);
  auto run = [&](int workers) {
    ImageLoaderOptions o;
    o.batch_size = 4;
    o.num_workers = workers;
    o.shard = {0, 1, 17, true, ShardMode::kEven};
    ImageLoader loader(src, o);
    std::vector<float> all;
    while (auto b = loader.next()) {
      const auto v = b->images.to_vector<float>();
      all.insert(all.end(), v.begin(), v.end());
    }
    return all;
  };
  const auto serial = run(0);
  EXPECT_EQ(serial.size(), 12u * 3 * 12 * 12);
  EXPECT_EQ(run(3), serial);
  fs::remove_all(dir);
}

TEST(ImageLoader, SyntheticImagesAreReproducible) {
  auto src = std::make_shared<SyntheticImages>(ImageSpec{3, 32, 32}, 1000, 64, 5);
  ImageLoaderOptions o;
  o.batch_size = 16;
  ImageLoader a(src, o), b(src, o);
  auto x = a.next(), y = b.next();
  ASSERT_TRUE(x && y);
  EXPECT_EQ(x->images.shape(), (Shape{16, 3, 32, 32}));
  EXPECT_EQ(x->images.to_vector<float>(), y->images.to_vector<float>());
  EXPECT_EQ(x->labels.to_vector<int64_t>(), y->labels.to_vector<int64_t>());
  double mean = 0;
  for (float v : x->images.to_vector<float>()) mean += v;
  EXPECT_NEAR(mean / x->images.numel(), 0.0, 0.05);
}

}  // namespace
}  // namespace kolo::data
