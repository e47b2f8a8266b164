// Hierarchical allreduce across nodes: NCCL reduce-scatter among the ranks of a node, MPI allreduce of
// this rank's part across nodes (staged through pinned host memory), NCCL allgather in the node. Only
// 1/local_size of the data crosses the network per rank, and NVLink carries the rest.
//
// Protocol per call (the same sequence on every rank): pad the count to a multiple of local_size (the pad
// reduces garbage that is never read back) → ncclReduceScatter → copy the part to host → the one host sync
// (the cross-node allreduce needs the bytes) → cross.allreduce on host → copy back → ncclAllGather → copy
// out of the pad, and Average's division — all on the local backend's communication stream. Testable on
// one host with a declared node size (KOLO_FAKE_LOCAL_SIZE), which makes `local` and `cross` split the
// ranks as if they were on several nodes.
#pragma once

#include <cstdint>

#include "collectives/nccl/nccl_backend.h"

namespace kolo {

class NcclHierarchicalAllreduce {
 public:
  // `local`: NCCL over this node's ranks; `cross`: a host backend over the ranks with this local rank.
  NcclHierarchicalAllreduce(NcclBackend& local, Backend& cross) : local_(local), cross_(cross) {}
  ~NcclHierarchicalAllreduce();
  NcclHierarchicalAllreduce(const NcclHierarchicalAllreduce&) = delete;
  NcclHierarchicalAllreduce& operator=(const NcclHierarchicalAllreduce&) = delete;

  // `send`/`recv` are device buffers (may be equal); `compute` as in NcclBackend::allreduce.
  void allreduce(const void* send, void* recv, int64_t count, DType dtype, ReduceOp op, Stream* compute);

 private:
  void reserve(int64_t device_bytes, int64_t host_bytes);
  NcclBackend& local_;
  Backend& cross_;
  void* scratch_ = nullptr;  // device: padded copy (local_size * part) followed by the part
  int64_t scratch_bytes_ = 0;
  void* host_ = nullptr;     // pinned: the part
  int64_t host_bytes_ = 0;
};

}  // namespace kolo
