// Coordinator messages through shared-memory mailboxes (protocol in shm_control_plane.h).
#include "collectives/mpi/shm_control_plane.h"

#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "collectives/mpi/poll_backoff.h"
#include "collectives/mpi/shared_segment.h"
#include "core/util/error.h"

namespace kolo {
namespace {

constexpr size_t kDataOffset = 256;  // posted, taken and the header each on a cache line before the data
constexpr size_t kBlockBytes = (kDataOffset + ShmControlPlane::kMailboxBytes + 4095) / 4096 * 4096;

uint64_t load(const uint64_t* p) { return std::atomic_ref<uint64_t>(*const_cast<uint64_t*>(p)).load(std::memory_order_acquire); }
void store(uint64_t* p, uint64_t v) { std::atomic_ref<uint64_t>(*p).store(v, std::memory_order_release); }

}  // namespace

struct ShmControlPlane::Mailbox {
  uint64_t* posted;
  uint64_t* taken;
  uint64_t* total;     // header: length of the whole message
  uint64_t* fragment;  // header: bytes in this fragment
  uint8_t* data;

  // Producer: writes the next fragment of `msg` from `*offset` if the consumer took the previous one. A
  // message is at least one fragment (an empty message is one empty fragment); `*offset` > size() when done.
  bool try_post(const std::vector<uint8_t>& msg, size_t* offset) {
    if (load(taken) != load(posted)) return false;
    const size_t n = std::min(kMailboxBytes, msg.size() - *offset);
    *total = msg.size();
    *fragment = n;
    if (n > 0) std::memcpy(data, msg.data() + *offset, n);
    store(posted, *posted + 1);
    *offset += n;
    if (*offset == msg.size()) *offset = msg.size() + 1;
    return true;
  }
  // Consumer: appends the next fragment to `*msg` if one is posted; true when the message is complete.
  bool try_take(std::vector<uint8_t>* msg, bool* started) {
    if (load(posted) == *taken) return false;
    if (!*started) {
      msg->clear();
      msg->reserve(*total);
      *started = true;
    }
    msg->insert(msg->end(), data, data + *fragment);
    const bool complete = msg->size() >= *total;
    store(taken, *taken + 1);
    return complete;
  }
};

std::unique_ptr<ShmControlPlane> ShmControlPlane::create() {
  MPI_Comm comm;
  if (MPI_Comm_dup(MPI_COMM_WORLD, &comm) != MPI_SUCCESS) return nullptr;
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  auto segment = SharedSegment::create(reinterpret_cast<void*>(comm), kBlockBytes * 2 * static_cast<size_t>(size),
                                       "control plane");
  MPI_Comm_free(&comm);
  if (!segment) return nullptr;
  // A new object is zero-filled: every mailbox starts empty (posted == taken == 0).
  return std::unique_ptr<ShmControlPlane>(new ShmControlPlane(std::move(segment), rank, size));
}

ShmControlPlane::ShmControlPlane(std::unique_ptr<SharedSegment> segment, int rank, int size)
    : segment_(std::move(segment)), rank_(rank), size_(size) {}

ShmControlPlane::~ShmControlPlane() = default;

ShmControlPlane::Mailbox ShmControlPlane::mailbox(int worker, bool up) const {
  uint8_t* b = segment_->data() + kBlockBytes * static_cast<size_t>(2 * worker + (up ? 0 : 1));
  return Mailbox{reinterpret_cast<uint64_t*>(b), reinterpret_cast<uint64_t*>(b + 64),
                 reinterpret_cast<uint64_t*>(b + 128), reinterpret_cast<uint64_t*>(b + 136), b + kDataOffset};
}

void ShmControlPlane::send_to_coordinator(const std::vector<uint8_t>& msg, Clock::time_point deadline) {
  Mailbox box = mailbox(rank_, true);
  const auto started = Clock::now();
  for (size_t offset = 0; offset <= msg.size();) {
    if (box.try_post(msg, &offset)) continue;
    if (Clock::now() > deadline) throw coordinator_did_not_take();
    poll_pause(started);
  }
}

std::vector<std::vector<uint8_t>> ShmControlPlane::gather_at_coordinator(Clock::time_point deadline) {
  std::vector<std::vector<uint8_t>> msgs(size_);
  std::vector<char> got(size_, 0), started_msg(size_, 0);
  int missing = size_ - 1;
  const auto started = Clock::now();
  while (missing > 0) {
    bool progress = false;
    for (int r = 1; r < size_; ++r) {
      if (got[r]) continue;
      Mailbox box = mailbox(r, true);
      bool s = started_msg[r] != 0;
      while (!got[r] && load(box.posted) != *box.taken) {
        if (box.try_take(&msgs[r], &s)) {
          got[r] = 1;
          --missing;
        }
        progress = true;
      }
      started_msg[r] = s;
    }
    if (missing == 0 || progress) continue;
    if (Clock::now() > deadline) throw_first_silent(got);
    poll_pause(started);
  }
  return msgs;
}

void ShmControlPlane::send_from_coordinator(const std::vector<uint8_t>& msg, const std::vector<int>& to) {
  std::vector<size_t> offset(to.size(), 0);
  size_t pending = to.size();
  const auto started = Clock::now();
  const auto deadline = started + std::chrono::seconds(5);
  while (pending > 0) {
    bool progress = false;
    for (size_t i = 0; i < to.size(); ++i) {
      if (offset[i] > msg.size()) continue;
      Mailbox box = mailbox(to[i], false);
      if (!box.try_post(msg, &offset[i])) continue;
      progress = true;
      if (offset[i] > msg.size()) --pending;
    }
    if (pending == 0 || progress) continue;
    // A receiver that vanished: its silence will be reported by the next gather.
    if (Clock::now() > deadline) return;
    poll_pause(started);
  }
}

std::vector<uint8_t> ShmControlPlane::receive_from_coordinator(Clock::time_point deadline) {
  Mailbox box = mailbox(rank_, false);
  std::vector<uint8_t> msg;
  bool started_msg = false;
  const auto started = Clock::now();
  for (;;) {
    while (load(box.posted) != *box.taken)
      if (box.try_take(&msg, &started_msg)) return msg;
    if (Clock::now() > deadline) throw coordinator_did_not_reply();
    poll_pause(started);
  }
}

}  // namespace kolo
