// ImageLoader: the epoch's item list from the sampler, batches built by the worker pool on the prefetcher.
#include "core/data/image_loader.h"

#include "core/util/error.h"

namespace kolo::data {

ImageLoader::ImageLoader(std::shared_ptr<const ImageSource> source, ImageLoaderOptions options)
    : source_(std::move(source)), options_(options), sampler_(source_ ? source_->size() : 0, options.shard),
      pool_(std::make_unique<WorkerPool>(options.num_workers)) {
  KOLO_CHECK(source_ != nullptr, "ImageLoader: no source");
  KOLO_CHECK(options.batch_size > 0, "ImageLoader: batch_size ", options.batch_size, " must be positive");
  // An exact shard (evaluation) may leave a rank nothing when there are fewer items than ranks.
  const bool may_be_empty = !options.drop_last && options.shard.mode == ShardMode::kExact;
  // Otherwise an epoch of no batch would leave a training loop asking for the next one for ever.
  KOLO_CHECK(batches_per_epoch() > 0 || may_be_empty, "ImageLoader: rank ", options.shard.rank,
             " gets ", sampler_.items_per_rank(), " items, fewer than one batch of ", options.batch_size,
             options.drop_last ? " (drop_last)" : "");
}

// The prefetcher references pool_ and items_, so it has to stop first.
ImageLoader::~ImageLoader() { prefetcher_.reset(); }

int64_t ImageLoader::batches_per_epoch() const {
  const int64_t n = sampler_.items_per_rank(), b = options_.batch_size;
  return options_.drop_last ? n / b : (n + b - 1) / b;
}

void ImageLoader::set_state(LoaderState state) {
  KOLO_CHECK(state.epoch >= 0 && state.index >= 0 && state.index <= batches_per_epoch(),
             "ImageLoader::set_state: position (epoch ", state.epoch, ", batch ", state.index, ") outside an epoch of ",
             batches_per_epoch(), " batches");
  prefetcher_.reset();
  state_ = state;
}

void ImageLoader::start_epoch() {
  items_ = sampler_.epoch_items(state_.epoch);
  prefetcher_ = std::make_unique<Prefetcher<ImageBatch>>([this, epoch = state_.epoch](int64_t b) { return make_batch(b, epoch); },
                                                         state_.index, batches_per_epoch(), options_.prefetch);
}

std::optional<ImageBatch> ImageLoader::next() {
  if (!prefetcher_) start_epoch();
  std::optional<ImageBatch> batch = prefetcher_->next();
  if (!batch) prefetcher_.reset();
  state_.advance(batch.has_value());
  return batch;
}

ImageBatch ImageLoader::make_batch(int64_t b, int64_t epoch) const {
  const int64_t begin = b * options_.batch_size;
  const int64_t count = std::min<int64_t>(options_.batch_size, static_cast<int64_t>(items_.size()) - begin);
  const ImageSpec spec = source_->spec();
  ImageBatch out;
  out.images = Tensor::empty({count, spec.channels, spec.height, spec.width}, DType::F32);
  out.labels = Tensor::empty({count}, DType::I64);
  float* images = out.images.data<float>();
  int64_t* labels = out.labels.data<int64_t>();
  const uint64_t epoch_key = Generator::hash(options_.shard.seed ^ 0x5eedda7aull, static_cast<uint64_t>(epoch));
  pool_->parallel_for(count, [&](int64_t k) {
    const int64_t item = items_[begin + k];
    labels[k] = source_->load(item, images + k * spec.numel(), Generator::hash(epoch_key, static_cast<uint64_t>(item)));
  });
  return out;
}

}  // namespace kolo::data
