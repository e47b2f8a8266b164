// WorkerPool: workers claim indices one at a time so slow decodes (big JPEGs) balance out.
#include "core/data/worker_pool.h"

namespace kolo::data {

WorkerPool::WorkerPool(int num_workers) {
  for (int i = 0; i < num_workers; ++i) threads_.emplace_back([this] { work(); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_work_.notify_all();
  for (auto& t : threads_) t.join();
}

void WorkerPool::parallel_for(int64_t n, const std::function<void(int64_t)>& fn) {
  if (threads_.empty()) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::unique_lock<std::mutex> lock(mu_);
  fn_ = &fn;
  n_ = n;
  next_ = 0;
  finished_ = 0;
  error_ = nullptr;
  ++generation_;
  cv_work_.notify_all();
  cv_done_.wait(lock, [this] { return finished_ == n_; });
  fn_ = nullptr;
  if (error_) std::rethrow_exception(error_);
}

void WorkerPool::work() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_work_.wait(lock, [this] { return stop_ || (fn_ != nullptr && next_ < n_); });
    if (stop_) return;
    const int64_t i = next_++;
    const auto* fn = fn_;
    lock.unlock();
    std::exception_ptr err;
    try {
      (*fn)(i);
    } catch (...) {
      err = std::current_exception();
    }
    lock.lock();
    if (err && !error_) error_ = err;
    if (++finished_ == n_) cv_done_.notify_all();
  }
}

}  // namespace kolo::data
