// Creation of a node-local shared-memory segment over MPI (see shared_segment.h).
#include "collectives/mpi/shared_segment.h"

#include <fcntl.h>
#include <mpi.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>

#include "core/util/logging.h"

namespace kolo {

std::unique_ptr<SharedSegment> SharedSegment::create(void* opaque_comm, size_t bytes, const char* what) {
  MPI_Comm comm = reinterpret_cast<MPI_Comm>(opaque_comm);
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  MPI_Comm node;
  if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node) != MPI_SUCCESS) return nullptr;
  int node_size = 0;
  MPI_Comm_size(node, &node_size);
  MPI_Comm_free(&node);
  // Every rank sees node_size < size when the ranks span several nodes, so all of them decline together.
  if (node_size != size || size < 2 || bytes == 0) return nullptr;

  char name[64] = {};
  int ok = 1;
  if (rank == 0) {
    // Unique per job and segment: the creator's pid and a per-process count of segments.
    static std::atomic<int> segments{0};
    std::snprintf(name, sizeof(name), "/kolo_shm.%d.%d", static_cast<int>(getpid()), segments++);
    const int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    ok = fd >= 0 && ftruncate(fd, static_cast<off_t>(bytes)) == 0;
    if (fd >= 0) close(fd);
  }
  MPI_Bcast(name, sizeof(name), MPI_CHAR, 0, comm);
  MPI_Bcast(&ok, 1, MPI_INT, 0, comm);
  uint8_t* base = nullptr;
  if (ok) {
    const int fd = shm_open(name, O_RDWR, 0600);
    if (fd >= 0) {
      void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      close(fd);
      if (p != MAP_FAILED) base = static_cast<uint8_t*>(p);
    }
  }
  int mapped = base != nullptr;
  MPI_Allreduce(MPI_IN_PLACE, &mapped, 1, MPI_INT, MPI_MIN, comm);  // also: every rank has opened it
  if (rank == 0 && ok) shm_unlink(name);
  if (!mapped) {
    if (base) munmap(base, bytes);
    if (rank == 0) KOLO_LOG(Warning, "shared-memory ", what, " unavailable (", name, "): using MPI instead");
    return nullptr;
  }
  return std::unique_ptr<SharedSegment>(new SharedSegment(base, bytes));
}

SharedSegment::~SharedSegment() { munmap(base_, bytes_); }

}  // namespace kolo
