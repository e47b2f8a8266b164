// oneDNN plumbing shared by the CPU kernels: engine and stream, dtype and memory-descriptor helpers, a
// reorder helper, and PrimitiveCache (LRU, keyed by a shape string) so that primitive descriptors, whose
// creation dominates small ops, are built once per shape.
//
// The engine is one per process: oneDNN's CPU engine is a handle to the host, stateless and thread-safe,
// like the kernel slots it serves. Streams are per thread (a stream is not meant to be shared between
// threads executing at once). Only built with KOLO_WITH_DNNL.
#pragma once

#include <dnnl.hpp>

#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/tensor/tensor.h"

namespace kolo::cpu {

dnnl::engine& dnnl_engine();
dnnl::stream& dnnl_stream();  // this thread's stream

// f32 and bf16 are what kolo sends to oneDNN; other dtypes use the Eigen/loop fallbacks.
bool dnnl_handles(DType dt);
dnnl::memory::data_type dnnl_dtype(DType dt);

// Plain (user) descriptor for a row-major buffer with the given dims and element strides.
dnnl::memory::desc plain_desc(const dnnl::memory::dims& dims, DType dt, const dnnl::memory::dims& strides);
dnnl::memory::dims row_major_strides(const dnnl::memory::dims& dims);

// Wraps a tensor's data (no copy) in a memory object of the given descriptor.
dnnl::memory wrap(const Tensor& t, const dnnl::memory::desc& md);

// Memory in layout `want` holding `user`'s values: `user` itself when the layouts agree, else a reordered
// copy in a pool-allocated scratch tensor (kept alive through `keep`).
dnnl::memory to_layout(const dnnl::memory& user, const dnnl::memory::desc& want, std::vector<Tensor>& keep);
// Memory in layout `have` to be written by a primitive and later copied into `user` with finish().
dnnl::memory output_in_layout(const dnnl::memory& user, const dnnl::memory::desc& have, std::vector<Tensor>& keep);
void finish_output(const dnnl::memory& produced, const dnnl::memory& user);

// True when creating a primitive failed because oneDNN has no implementation for it on this CPU (e.g. bf16
// on a machine without AVX-512); callers then compute in f32.
bool is_unimplemented(const dnnl::error& e);

// Thread-safe LRU map from a shape key to a shared, immutable cached value.
template <typename V>
class PrimitiveCache {
 public:
  explicit PrimitiveCache(size_t capacity = 512) : capacity_(capacity) {}

  // Returns the cached value for key, building it with make() (outside the lock) on a miss.
  template <typename Make>
  std::shared_ptr<const V> get(const std::string& key, Make&& make) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = map_.find(key);
      if (it != map_.end()) {
        order_.splice(order_.begin(), order_, it->second.second);
        return it->second.first;
      }
    }
    auto value = std::make_shared<const V>(make());
    std::lock_guard<std::mutex> lock(mu_);
    if (map_.count(key)) return map_[key].first;
    order_.push_front(key);
    map_.emplace(key, std::make_pair(value, order_.begin()));
    if (map_.size() > capacity_) {
      map_.erase(order_.back());
      order_.pop_back();
    }
    return value;
  }
  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return map_.size();
  }

 private:
  size_t capacity_;
  mutable std::mutex mu_;
  std::list<std::string> order_;
  std::unordered_map<std::string, std::pair<std::shared_ptr<const V>, std::list<std::string>::iterator>> map_;
};

}  // namespace kolo::cpu
