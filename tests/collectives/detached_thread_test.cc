// A survivor's background thread left behind in a collective must not touch its destroyed Runtime.
// Rank `last` stalls in the callback of the first of two collectives negotiated in one cycle, so the other
// ranks' background threads block in the second one's data-plane call. Their handles fail at the heartbeat
// timeout, they destroy their Runtime (shutdown() detaches the stuck thread) and churn the heap while the
// stalled rank resumes: the detached threads then finish the collective and the shutdown protocol, which
// touches only the state they co-own. A thread that used the freed Runtime would read overwritten memory
// (a crash or hang here; a heap-use-after-free report under AddressSanitizer).
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "collectives/ops.h"

namespace {

// Allocates, fills and frees blocks of assorted sizes for `seconds`, reusing whatever the Runtime freed.
size_t churn_heap(double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  size_t blocks = 0;
  std::vector<std::unique_ptr<char[]>> live(64);
  while (std::chrono::steady_clock::now() < end) {
    for (size_t i = 0; i < live.size(); ++i, ++blocks) {
      const size_t n = 16 + (blocks * 7919) % 4096;
      live[i].reset(new char[n]);
      std::memset(live[i].get(), 0xA5, n);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return blocks;
}

}  // namespace

int main() {
  using namespace kolo;
  auto rt = std::make_unique<Runtime>();
  const int rank = rt->rank(), last = rt->size() - 1;
  allreduce(*rt, Tensor::ones({8}), "warmup");
  // Different dtypes: two collectives of one cycle, executed in order ("first", then "second").
  std::vector<Tensor> tensors = {Tensor::ones({4}, DType::I32), Tensor::ones({1 << 16})};
  Callback stall;
  if (rank == last) stall = [](const std::string&) { std::this_thread::sleep_for(std::chrono::seconds(4)); };
  auto handles = rt->grouped_allreduce_async(tensors, {"first", "second"}, {}, stall);
  try {
    wait_all(handles);
    if (rank == last) {
      std::printf("STALLED rank %d completed both collectives\n", rank);
      rt.reset();
      return 0;
    }
    std::printf("SURVIVOR-NO-ERROR rank %d: the stalled collective completed before the heartbeat timeout\n", rank);
    return 1;
  } catch (const Error& e) {
    if (rank == last) {
      std::printf("STALLED rank %d failed: %s\n", rank, e.what());
      return 1;
    }
    rt.reset();
    const size_t blocks = churn_heap(7.0);
    std::printf("SURVIVOR rank %d kept running after destroying its runtime (%zu heap blocks churned): %s\n", rank,
                blocks, e.what());
    std::fflush(stdout);
    std::_Exit(0);  // the detached thread may still hold MPI; do not finalise under it
  }
}
