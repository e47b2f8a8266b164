// Produces items [begin, end) on a background thread, up to `depth` ahead of the consumer.
//
// The producer's exceptions are carried over to the consumer's next() (so a bad file surfaces as the
// kolo::Error it threw, on the training thread). Destroying the Prefetcher stops the thread after the
// item being produced, so a loader can be repositioned by building a new one.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

namespace kolo::data {

template <typename T>
class Prefetcher {
 public:
  Prefetcher(std::function<T(int64_t)> produce, int64_t begin, int64_t end, int depth)
      : produce_(std::move(produce)), next_(begin), end_(end), depth_(depth < 1 ? 1 : depth) {
    thread_ = std::thread([this] { run(); });
  }
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;
  ~Prefetcher() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  // The next item in order, or nullopt once all of [begin, end) were returned.
  std::optional<T> next() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return !ready_.empty() || error_ || done_; });
    if (!ready_.empty()) {
      T item = std::move(ready_.front());
      ready_.pop_front();
      cv_.notify_all();
      return item;
    }
    if (error_) std::rethrow_exception(error_);
    return std::nullopt;
  }

 private:
  void run() {
    for (;;) {
      int64_t k;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stop_ || static_cast<int>(ready_.size()) < depth_; });
        if (stop_ || next_ >= end_) {
          done_ = true;
          cv_.notify_all();
          return;
        }
        k = next_++;
      }
      try {
        T item = produce_(k);
        std::lock_guard<std::mutex> lock(mu_);
        ready_.push_back(std::move(item));
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu_);
        error_ = std::current_exception();
        done_ = true;
        cv_.notify_all();
        return;
      }
      cv_.notify_all();
    }
  }

  std::function<T(int64_t)> produce_;
  int64_t next_;
  const int64_t end_;
  const int depth_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<T> ready_;
  std::exception_ptr error_;
  bool stop_ = false;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace kolo::data
