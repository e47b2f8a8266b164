// ImageLoader: batches of an ImageSource for one rank — sharded, shuffled per epoch, decoded by worker
// threads, assembled on a background thread, `prefetch` batches ahead.
//
// Batches are f32 images [B, C, H, W] and i64 labels [B] on the CPU. next() returns nullopt once at the
// end of each epoch and the following call starts the next epoch. state()/set_state() give the position
// (epoch, batches already returned) for checkpoints; restoring it reproduces the same following batches,
// augmentation included, because every random draw is keyed by (seed, epoch, item).
#pragma once

#include <memory>
#include <optional>

#include "core/data/image_source.h"
#include "core/data/prefetcher.h"
#include "core/data/shard_sampler.h"
#include "core/data/worker_pool.h"
#include "core/tensor/tensor.h"

namespace kolo::data {

struct ImageBatch {
  Tensor images;  // f32 [B, C, H, W]
  Tensor labels;  // i64 [B]
};

struct ImageLoaderOptions {
  int64_t batch_size = 32;  // per rank
  ShardOptions shard;
  bool drop_last = true;  // drop this rank's final partial batch
  int num_workers = 2;    // decoding threads (0: decode on the prefetch thread)
  int prefetch = 2;       // batches assembled ahead
};

class ImageLoader {
 public:
  ImageLoader(std::shared_ptr<const ImageSource> source, ImageLoaderOptions options);
  ~ImageLoader();

  std::optional<ImageBatch> next();
  int64_t batches_per_epoch() const;
  LoaderState state() const { return state_; }
  void set_state(LoaderState state);
  const ImageSource& source() const { return *source_; }

 private:
  ImageBatch make_batch(int64_t batch, int64_t epoch) const;
  void start_epoch();

  std::shared_ptr<const ImageSource> source_;
  ImageLoaderOptions options_;
  ShardSampler sampler_;
  std::unique_ptr<WorkerPool> pool_;
  LoaderState state_;
  std::vector<int64_t> items_;  // this rank's items of state_.epoch
  std::unique_ptr<Prefetcher<ImageBatch>> prefetcher_;
};

}  // namespace kolo::data
