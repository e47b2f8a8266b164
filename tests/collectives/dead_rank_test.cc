// A rank is SIGKILLed between collectives; the survivors' next collective must fail within the heartbeat
// timeout with an error naming the lost rank, and they exit non-zero (ctest matches the printed line).
#include <csignal>
#include <cstdio>
#include <chrono>

#include "collectives/ops.h"

int main() {
  kolo::Runtime rt;
  const int last = rt.size() - 1;
  kolo::allreduce(rt, kolo::Tensor::ones({8}), "before");
  if (rt.rank() == last) std::raise(SIGKILL);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    kolo::allreduce(rt, kolo::Tensor::ones({8}), "after");
    std::printf("SURVIVOR-NO-ERROR rank %d\n", rt.rank());
    return 0;
  } catch (const kolo::Error& e) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("SURVIVOR rank %d exits 3: %s (after %.1f s)\n", rt.rank(), e.what(), s);
    std::fflush(stdout);
    if (s > 30) std::printf("SURVIVOR-NO-ERROR: detection took longer than 30 s\n");
    std::fflush(stdout);
    std::_Exit(3);  // the runtime's thread cannot finalise MPI with a dead peer; leave at once
  }
}
