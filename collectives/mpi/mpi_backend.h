// Open MPI implementation of Backend (data plane) and ControlPlane (coordinator messages).
//
// Every kolo MPI call is made by the runtime's background thread; MPI is initialised there with
// MPI_THREAD_MULTIPLE (or an MPI the program already initialised is reused and left to it to finalise).
// Data and control use separate duplicated communicators with MPI_ERRORS_RETURN, so an MPI failure becomes a
// kolo::Error naming the call and rank instead of a process abort. The control plane only uses non-blocking
// point-to-point calls polled against a deadline: that is the heartbeat which names a dead rank.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "collectives/backend.h"

namespace kolo {

class MpiContext;  // MPI initialisation, finalisation and the bf16/f16 reduction ops (mpi_backend.cc)
class ShmAllreduce;

// True when this process was started by mpirun/srun (or MPI is already initialised), i.e. an MPI backend
// can see the other ranks. Never initialises MPI.
bool mpi_launch_detected();

class MpiBackend final : public Backend {
 public:
  // Initialises MPI if needed; the backend spans MPI_COMM_WORLD. With `shm_allreduce`, allreduces of at least
  // kShmMinBytes (and allreduce_spans) go through a shared-memory segment (shm_allreduce.h) when every rank of
  // the communicator shares this node; the segment is built by the first such call (a collective step every
  // rank reaches together); split() backends build their own.
  explicit MpiBackend(bool shm_allreduce = false);
  ~MpiBackend() override;
  const char* name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool accepts(Device device) const override { return device.is_cpu(); }
  void allreduce(const void* send, void* recv, int64_t count, DType dtype, ReduceOp op, Stream* stream) override;
  void allgatherv(const void* send, void* recv, const std::vector<int64_t>& counts, DType dtype,
                  Stream* stream) override;
  void broadcast(void* buf, int64_t count, DType dtype, int root, Stream* stream) override;
  void alltoallv(const void* send, const std::vector<int64_t>& send_counts, void* recv,
                 const std::vector<int64_t>& recv_counts, DType dtype, Stream* stream) override;
  void reducescatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType dtype, ReduceOp op,
                     Stream* stream) override;
  bool allreduce_spans(const std::vector<HostSpan>& spans, DType dtype, ReduceOp op, double prescale,
                       double postscale) override;
  void barrier() override;
  void abort(const std::string& reason) override;
  std::unique_ptr<Backend> split(int color) override;

  // Node id of every rank (world rank of the node's lowest rank), from MPI_Comm_split_type(SHARED).
  std::vector<int> node_ids();

  // Below this size Open MPI's eager shared-memory messages are faster than the segment's three steps.
  static constexpr int64_t kShmMinBytes = 8 << 10;
  // Per rank; larger buffers go through in pieces. Small enough that a piece is still in the core's L2 when it
  // is reduced and copied out: on the 2-rank VM (2 MiB L2 per core) 256 KiB beat 64 KiB, 128 KiB and 1-4 MiB
  // from 1 MiB up. Where the ranks outnumber the node's CPUs, each of a piece's three steps can wait for a
  // rank that is not running, so fewer, larger pieces win: 1 MiB there (benchmarks/RESULTS.md, "Session 14").
  static constexpr int64_t kShmSlotBytes = 256 << 10;
  static constexpr int64_t kShmSlotBytesOversubscribed = 1 << 20;

 private:
  MpiBackend(std::shared_ptr<MpiContext> ctx, void* comm, bool shm_allreduce);
  ShmAllreduce* shm(int64_t bytes);  // the segment when this call should use it, else nullptr
  std::shared_ptr<MpiContext> ctx_;
  void* comm_;  // MPI_Comm, kept opaque so this header does not pull in mpi.h
  int rank_ = 0;
  int size_ = 1;
  bool aborted_ = false;
  bool shm_allreduce_ = false;
  bool shm_tried_ = false;
  std::unique_ptr<ShmAllreduce> shm_;
};

class MpiControlPlane final : public ControlPlane {
 public:
  MpiControlPlane();  // duplicates MPI_COMM_WORLD; MPI must already be initialised (by an MpiBackend)
  ~MpiControlPlane() override;
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void send_to_coordinator(const std::vector<uint8_t>& msg, Clock::time_point deadline) override;
  std::vector<std::vector<uint8_t>> gather_at_coordinator(Clock::time_point deadline) override;
  void send_from_coordinator(const std::vector<uint8_t>& msg, const std::vector<int>& to) override;
  std::vector<uint8_t> receive_from_coordinator(Clock::time_point deadline) override;

 private:
  std::shared_ptr<MpiContext> ctx_;
  void* comm_;
  int rank_ = 0;
  int size_ = 1;
  std::vector<uint8_t> out_;  // the message being sent (its capacity is kept between cycles)
};

}  // namespace kolo
