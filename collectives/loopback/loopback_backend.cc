// Loopback collectives: copies with the same argument checks a multi-rank backend would apply.
#include "collectives/loopback/loopback_backend.h"

#include <cstring>

namespace kolo {
namespace {

void copy_elems(const void* src, void* dst, int64_t count, DType dtype) {
  if (src != dst && count > 0) std::memcpy(dst, src, static_cast<size_t>(count) * dtype_size(dtype));
}

}  // namespace

void LoopbackBackend::allreduce(const void* send, void* recv, int64_t count, DType dtype, ReduceOp, Stream*) {
  copy_elems(send, recv, count, dtype);
}

void LoopbackBackend::allgatherv(const void* send, void* recv, const std::vector<int64_t>& counts, DType dtype,
                                 Stream*) {
  KOLO_CHECK(counts.size() == 1, "loopback allgatherv: ", counts.size(), " counts for 1 rank");
  copy_elems(send, recv, counts[0], dtype);
}

void LoopbackBackend::broadcast(void*, int64_t, DType, int root, Stream*) {
  KOLO_CHECK(root == 0, "loopback broadcast: root ", root, " out of range for 1 rank");
}

void LoopbackBackend::alltoallv(const void* send, const std::vector<int64_t>& send_counts, void* recv,
                                const std::vector<int64_t>& recv_counts, DType dtype, Stream*) {
  KOLO_CHECK(send_counts.size() == 1 && recv_counts.size() == 1 && send_counts[0] == recv_counts[0],
             "loopback alltoallv: counts must be one equal entry");
  copy_elems(send, recv, send_counts[0], dtype);
}

void LoopbackBackend::reducescatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType dtype,
                                    ReduceOp, Stream*) {
  KOLO_CHECK(counts.size() == 1, "loopback reducescatter: ", counts.size(), " counts for 1 rank");
  copy_elems(send, recv, counts[0], dtype);
}

std::unique_ptr<Backend> LoopbackBackend::split(int color) {
  if (color < 0) return nullptr;
  return std::make_unique<LoopbackBackend>();
}

std::vector<uint8_t> LoopbackControlPlane::receive_from_coordinator(Clock::time_point) {
  KOLO_FAIL("loopback control plane: the single rank is the coordinator and never receives");
}

}  // namespace kolo
