// Shared-memory allreduce among the ranks of one node (protocol in shm_allreduce.h).
#include "collectives/mpi/shm_allreduce.h"

#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "collectives/mpi/poll_backoff.h"
#include "collectives/mpi/shared_segment.h"
#include "collectives/reduce_kernels.h"
#include "core/util/error.h"

namespace kolo {
namespace {

constexpr size_t kCounterStride = 64;  // one cache line per counter
constexpr size_t kCountersBytes = 4096;  // the counters' page, so every slot starts page-aligned
constexpr int kArrived = 0, kReduced = 1, kDone = 2;
constexpr int64_t kSliceAlign = 64;  // bytes: slices of a piece start on cache lines

size_t round_up(size_t v, size_t to) { return (v + to - 1) / to * to; }

// Element range [lo, hi) of slice q of a piece of `count` elements split over n ranks.
std::pair<int64_t, int64_t> slice(int64_t count, int q, int n, int64_t align_elems) {
  auto edge = [&](int k) {
    if (k >= n) return count;
    return std::min(count, (count * k / n) / align_elems * align_elems);
  };
  return {edge(q), edge(q + 1)};
}

}  // namespace

std::unique_ptr<ShmAllreduce> ShmAllreduce::create(void* comm, int64_t slot_bytes) {
  if (slot_bytes <= 0) return nullptr;
  int size = 1;
  MPI_Comm_size(reinterpret_cast<MPI_Comm>(comm), &size);
  const size_t block = kCountersBytes + round_up(static_cast<size_t>(slot_bytes), 4096);
  auto segment = SharedSegment::create(comm, block * static_cast<size_t>(size), "allreduce");
  if (!segment) return nullptr;
  int rank = 0;
  MPI_Comm_rank(reinterpret_cast<MPI_Comm>(comm), &rank);
  // A new object is zero-filled, so every counter starts at 0 (no piece done).
  return std::unique_ptr<ShmAllreduce>(new ShmAllreduce(std::move(segment), rank, size, slot_bytes, block));
}

ShmAllreduce::ShmAllreduce(std::unique_ptr<SharedSegment> segment, int rank, int size, int64_t slot_bytes,
                           size_t block_bytes)
    : segment_(std::move(segment)),
      base_(segment_->data()),
      rank_(rank),
      size_(size),
      slot_bytes_(slot_bytes),
      block_bytes_(block_bytes) {}

ShmAllreduce::~ShmAllreduce() = default;

uint64_t* ShmAllreduce::counter(int rank, int which) const {
  return reinterpret_cast<uint64_t*>(base_ + block_bytes_ * static_cast<size_t>(rank) +
                                     kCounterStride * static_cast<size_t>(which));
}

uint8_t* ShmAllreduce::slot(int rank) const {
  return base_ + block_bytes_ * static_cast<size_t>(rank) + kCountersBytes;
}

void ShmAllreduce::wait_all(int which, uint64_t value) const {
  const auto started = std::chrono::steady_clock::now();
  for (int q = 0; q < size_; ++q)
    while (std::atomic_ref<uint64_t>(*counter(q, which)).load(std::memory_order_acquire) < value)
      poll_pause(started);
}

void ShmAllreduce::allreduce(const void* send, void* recv, int64_t count, DType dtype, ReduceOp op) {
  allreduce_spans({HostSpan{send, recv, count}}, dtype, op, 1.0, 1.0);
}

void ShmAllreduce::allreduce_spans(const std::vector<HostSpan>& spans, DType dtype, ReduceOp op, double prescale,
                                   double postscale) {
  const int64_t esize = static_cast<int64_t>(dtype_size(dtype));
  const int64_t piece_elems = std::max<int64_t>(1, slot_bytes_ / esize);
  const int64_t align_elems = std::max<int64_t>(1, kSliceAlign / esize);
  std::vector<int64_t> start(spans.size() + 1, 0);  // element offset of each span in the concatenation
  for (size_t i = 0; i < spans.size(); ++i) start[i + 1] = start[i] + spans[i].count;
  const int64_t count = start.back();
  // Calls f(span, offset in span, offset in the concatenation, length) for the parts of [a, b).
  auto for_parts = [&](int64_t a, int64_t b, auto&& f) {
    size_t i = static_cast<size_t>(std::upper_bound(start.begin(), start.end(), a) - start.begin()) - 1;
    for (; a < b && i < spans.size(); ++i) {
      const int64_t hi = std::min(b, start[i + 1]);
      if (hi > a) f(spans[i], a - start[i], a, hi - a);
      a = std::max(a, hi);
    }
  };
  uint8_t* mine = slot(rank_);
  for (int64_t off = 0; off < count; off += piece_elems) {
    const int64_t m = std::min(piece_elems, count - off);
    const uint64_t s = ++seq_;
    wait_all(kDone, s - 1);
    for_parts(off, off + m, [&](const HostSpan& sp, int64_t at, int64_t pos, int64_t len) {
      coll::convert_buffer(static_cast<const uint8_t*>(sp.send) + at * esize, dtype, mine + (pos - off) * esize, dtype,
                           len, prescale);
    });
    std::atomic_ref<uint64_t>(*counter(rank_, kArrived)).store(s, std::memory_order_release);

    wait_all(kArrived, s);
    const auto [lo, hi] = slice(m, rank_, size_, align_elems);
    if (hi > lo)
      for (int q = 0; q < size_; ++q)
        if (q != rank_) coll::reduce_into(mine + lo * esize, slot(q) + lo * esize, hi - lo, dtype, op);
    std::atomic_ref<uint64_t>(*counter(rank_, kReduced)).store(s, std::memory_order_release);

    wait_all(kReduced, s);
    for (int q = 0; q < size_; ++q) {
      const auto [a, b] = slice(m, q, size_, align_elems);
      const uint8_t* from = slot(q);
      for_parts(off + a, off + b, [&](const HostSpan& sp, int64_t at, int64_t pos, int64_t len) {
        coll::convert_buffer(from + (pos - off) * esize, dtype, static_cast<uint8_t*>(sp.recv) + at * esize, dtype,
                             len, postscale);
      });
    }
    std::atomic_ref<uint64_t>(*counter(rank_, kDone)).store(s, std::memory_order_release);
  }
}

}  // namespace kolo
