// The size-1 backend: every collective over one rank is a copy, and the control plane talks to itself.
// It lets a program call kolo::init() without mpirun and run the same code path as a multi-rank job.
#pragma once

#include <memory>

#include "collectives/backend.h"

namespace kolo {

class LoopbackBackend final : public Backend {
 public:
  const char* name() const override { return "loopback"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  bool accepts(Device device) const override { return device.is_cpu(); }
  void allreduce(const void* send, void* recv, int64_t count, DType dtype, ReduceOp op, Stream* stream) override;
  void allgatherv(const void* send, void* recv, const std::vector<int64_t>& counts, DType dtype,
                  Stream* stream) override;
  void broadcast(void* buf, int64_t count, DType dtype, int root, Stream* stream) override;
  void alltoallv(const void* send, const std::vector<int64_t>& send_counts, void* recv,
                 const std::vector<int64_t>& recv_counts, DType dtype, Stream* stream) override;
  void reducescatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType dtype, ReduceOp op,
                     Stream* stream) override;
  void barrier() override {}
  void abort(const std::string&) override {}
  std::unique_ptr<Backend> split(int color) override;
};

// Coordinator and only worker at once: gathers nothing, sends nothing.
class LoopbackControlPlane final : public ControlPlane {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void send_to_coordinator(const std::vector<uint8_t>&, Clock::time_point) override {}
  std::vector<std::vector<uint8_t>> gather_at_coordinator(Clock::time_point) override { return {{}}; }
  void send_from_coordinator(const std::vector<uint8_t>&, const std::vector<int>&) override {}
  std::vector<uint8_t> receive_from_coordinator(Clock::time_point) override;
};

}  // namespace kolo
