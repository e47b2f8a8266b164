// SharedSegment: one POSIX shared-memory region mapped by every rank of an MPI communicator whose ranks all
// share this node (the shared-memory allreduce and control plane live in one each). Rank 0 creates a
// zero-filled object, every rank maps it, and it is unlinked as soon as all have: nothing is left in
// /dev/shm however the job ends, and tearing it down is local (munmap, no collective).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace kolo {

class SharedSegment {
 public:
  // Collective over `comm` (an MPI_Comm, kept opaque): nullptr on every rank when the ranks span several
  // nodes, there is only one rank, or some rank could not map the object. `what` names it in the warning.
  static std::unique_ptr<SharedSegment> create(void* comm, size_t bytes, const char* what);
  ~SharedSegment();
  SharedSegment(const SharedSegment&) = delete;
  SharedSegment& operator=(const SharedSegment&) = delete;

  uint8_t* data() const { return base_; }
  size_t size() const { return bytes_; }

 private:
  SharedSegment(uint8_t* base, size_t bytes) : base_(base), bytes_(bytes) {}
  uint8_t* base_;
  size_t bytes_;
};

}  // namespace kolo
