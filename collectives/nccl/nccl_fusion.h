// Device fusion for NCCL allreduce, read top to bottom like Horovod's NCCLAllreduce::Execute: make the
// communication stream wait for the compute stream's ready event → pack every tensor into the device fusion
// buffer (prescale and wire compression folded into one batched kernel) → one ncclAllReduce (ncclAvg for
// floating Average) → unpack (postscale, integer Average's division, decompression in one batched kernel)
// → done event that the compute stream waits on. No host sync anywhere.
//
// Fusion buffer protocol: one device buffer per NcclFusion, grown on demand (the only host sync: the old
// buffer is freed once the communication stream drained it) and never shrunk; tensors are placed at
// offsets aligned to kFusionAlignment bytes in the order given; padding is never read back.
// No buffer when no wire compression is asked for and the tensors are in place and lie in at most a few
// runs of adjacent memory — the DistributedOptimizer's gradient slots are slices of one flat buffer, so a
// fused group of them is one run: it is scaled (if asked) and reduced where it lies, several runs as one
// NCCL group. A group with one non-empty tensor is reduced straight from input to output (prescaled into the
// output first), whatever its layout, so ranks that hold it in place and out of place make the same call.
// Hierarchical: pack → NcclHierarchicalAllreduce on the buffer → unpack, each step ordered after the
// previous one's done event (the steps may run on different round-robin streams).
#pragma once

#include <cstdint>
#include <vector>

#include "collectives/device_collectives.h"
#include "collectives/nccl/nccl_backend.h"
#include "collectives/nccl/nccl_hierarchical.h"

namespace kolo {

struct FusedAllreduceSpec {
  DType dtype = DType::F32;  // of every tensor
  DType wire = DType::F32;   // on the wire: dtype, or F16/BF16 compression of F32/F64
  ReduceOp op = ReduceOp::Sum;
  double prescale = 1.0;
  double postscale = 1.0;    // after Average's 1/size
  bool where_they_lie = true;  // false: never reduce in place (the ranks' runs of adjacent views differ)
};

class NcclFusion {
 public:
  explicit NcclFusion(NcclBackend& backend) : backend_(backend) {}
  ~NcclFusion();
  NcclFusion(const NcclFusion&) = delete;
  NcclFusion& operator=(const NcclFusion&) = delete;

  // One collective for all `spans`; `compute` (may be nullptr) is the stream that produced the inputs and
  // will consume the outputs. With `hierarchical` (whose local backend must be this fusion's backend) the
  // packed buffer is reduced by it instead of one ncclAllReduce; it applies Average's division itself.
  void allreduce(const std::vector<DeviceSpan>& spans, const FusedAllreduceSpec& spec, Stream* compute,
                 NcclHierarchicalAllreduce* hierarchical = nullptr);
  int64_t capacity() const { return capacity_; }

 private:
  void* buffer(int64_t bytes);
  NcclBackend& backend_;
  void* buffer_ = nullptr;
  int64_t capacity_ = 0;
  cudaEvent_t buffer_free_ = nullptr;  // recorded after the last unpack: the buffer may be reused past it
};

}  // namespace kolo
