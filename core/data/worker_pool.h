// A fixed set of threads that run parallel_for(n, fn): the image decoders of a loader.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kolo::data {

class WorkerPool {
 public:
  // 0 workers runs everything on the calling thread.
  explicit WorkerPool(int num_workers);
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;
  ~WorkerPool();

  int num_workers() const { return static_cast<int>(threads_.size()); }
  // Calls fn(i) for i in [0, n) across the workers and waits; rethrows the first exception raised.
  // One caller at a time (a loader's prefetch thread).
  void parallel_for(int64_t n, const std::function<void(int64_t)>& fn);

 private:
  void work();

  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_work_, cv_done_;
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, next_ = 0, finished_ = 0;
  uint64_t generation_ = 0;
  std::exception_ptr error_;
  bool stop_ = false;
};

}  // namespace kolo::data
