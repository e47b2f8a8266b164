// Vocabulary of the collectives layer: op kinds, reduce ops, compression, and the Request/Response
// messages the controller exchanges (with their byte serialization, so any ControlPlane can carry them).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/device/device.h"
#include "core/tensor/dtype.h"
#include "core/tensor/shape.h"

namespace kolo {

enum class ReduceOp : uint8_t { Sum = 0, Average, Min, Max, Product };
enum class OpType : uint8_t {
  Allreduce = 0, Allgather, Broadcast, Alltoall, Reducescatter, Barrier, Join, ProcessSetCreate
};
// Wire compression for floating allreduce: values travel as f16/bf16, are reduced in f32.
enum class Compression : uint8_t { None = 0, F16, BF16 };

const char* reduce_op_name(ReduceOp op);
const char* op_type_name(OpType op);     // "ALLREDUCE", ... (also the timeline activity name)
const char* compression_name(Compression c);
Compression compression_from_name(const std::string& name);  // "none", "fp16", "bf16"; throws otherwise

// One rank's announcement that it has enqueued the named tensor. Everything that must agree across ranks
// is here; `rank` says who sent it.
struct Request {
  std::string name;
  int32_t rank = 0;
  OpType op = OpType::Allreduce;
  ReduceOp reduce = ReduceOp::Sum;
  DType dtype = DType::F32;
  DeviceType device = DeviceType::CPU;  // where the tensor lives (the index may differ across ranks)
  Shape shape;
  int32_t root = 0;
  double prescale = 1.0;
  double postscale = 1.0;
  int32_t process_set = 0;
  Compression compression = Compression::None;
  std::vector<int32_t> ranks;  // ProcessSetCreate only: the member ranks

  // Empty when the two requests may be executed together under one name; else what differs, e.g.
  // "shape [2, 3] vs [3, 2]". Allgather/Alltoall ignore the first dimension (it may differ per rank).
  std::string mismatch(const Request& other) const;
  // Whether two tensors may share one fused collective (same op, dtype, device type, reduce op, scales, set,
  // compression).
  bool fusable_with(const Request& other) const;
};

// A decision of the coordinator that every rank executes in the same order. `names` holds more than one
// tensor when the collective is fused. A non-empty `error` means: fail these tensors with this message.
struct Response {
  OpType op = OpType::Allreduce;
  std::vector<std::string> names;
  std::vector<Request> params;  // one per name: the agreed parameters (rank 0's request)
  std::string error;
  int process_set = 0;           // of every name: the same name may be in flight on another set
};

// What a rank sends to the coordinator each cycle.
struct RequestList {
  std::vector<Request> requests;        // new requests that missed the response cache
  std::vector<uint64_t> cached_bits;    // new requests that hit it: bit i = cache slot i
  bool shutdown = false;
  bool joined = false;
  // Non-empty: this rank failed while running an agreed collective, so its collectives are out of step with
  // the other ranks'; the coordinator aborts every rank with this message.
  std::string failure;
};

// What the coordinator sends back each cycle.
struct ResponseList {
  std::vector<uint64_t> cached_ready;   // cache slots ready on every rank, executed in slot order
  std::vector<Response> responses;      // uncached ready tensors and errors, executed after the cached ones
  std::string abort;                    // non-empty: the job is failing (lost rank, stall shutdown)
  bool shutdown = false;
  int64_t fusion_threshold = 0;         // current agreed values (autotune may change them)
  double cycle_time_ms = 0;
};

std::vector<uint8_t> serialize(const RequestList& list);
RequestList deserialize_request_list(const std::vector<uint8_t>& bytes);
std::vector<uint8_t> serialize(const ResponseList& list);
ResponseList deserialize_response_list(const std::vector<uint8_t>& bytes);

}  // namespace kolo
