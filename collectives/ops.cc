// The default runtime (a convenience owned here, never required by the library) and blocking wrappers.
#include "collectives/ops.h"

#include <memory>
#include <mutex>

#include "core/util/error.h"

namespace kolo {
namespace {

std::mutex& default_mu() {
  static std::mutex mu;
  return mu;
}
std::unique_ptr<Runtime>& default_runtime() {
  static std::unique_ptr<Runtime> rt;
  return rt;
}

}  // namespace

Runtime& init(Config config) {
  std::lock_guard<std::mutex> lock(default_mu());
  if (!default_runtime()) default_runtime() = std::make_unique<Runtime>(std::move(config));
  return *default_runtime();
}

void shutdown() {
  std::unique_ptr<Runtime> rt;
  {
    std::lock_guard<std::mutex> lock(default_mu());
    rt = std::move(default_runtime());
  }
  if (rt) rt->shutdown();
}

bool initialized() {
  std::lock_guard<std::mutex> lock(default_mu());
  return default_runtime() != nullptr;
}

Runtime& runtime() {
  std::lock_guard<std::mutex> lock(default_mu());
  KOLO_CHECK(default_runtime(), "kolo collectives: call kolo::init() first");
  return *default_runtime();
}

int rank() { return runtime().rank(); }
int size() { return runtime().size(); }
int local_rank() { return runtime().local_rank(); }
int local_size() { return runtime().local_size(); }
int cross_rank() { return runtime().cross_rank(); }
int cross_size() { return runtime().cross_size(); }

Tensor allreduce(Runtime& rt, const Tensor& tensor, const std::string& name, const AllreduceOptions& opts) {
  Tensor out = Tensor::empty(tensor.shape(), tensor.dtype(), tensor.device());
  rt.allreduce_async(tensor, name, opts, out).wait();
  return out;
}
Tensor allreduce(const Tensor& tensor, const std::string& name, const AllreduceOptions& opts) {
  return allreduce(runtime(), tensor, name, opts);
}

void grouped_allreduce(Runtime& rt, const std::vector<Tensor>& tensors, const std::vector<std::string>& names,
                       const AllreduceOptions& opts) {
  wait_all(rt.grouped_allreduce_async(tensors, names, opts));
}

Tensor allgather(Runtime& rt, const Tensor& tensor, const std::string& name, int process_set) {
  return rt.allgather_async(tensor, name, process_set).output();
}
Tensor allgather(const Tensor& tensor, const std::string& name, int process_set) {
  return allgather(runtime(), tensor, name, process_set);
}

void broadcast(Runtime& rt, Tensor tensor, int root, const std::string& name, int process_set) {
  rt.broadcast_async(std::move(tensor), root, name, process_set).wait();
}
void broadcast(Tensor tensor, int root, const std::string& name, int process_set) {
  broadcast(runtime(), std::move(tensor), root, name, process_set);
}

Tensor alltoall(Runtime& rt, const Tensor& tensor, const std::vector<int64_t>& splits, const std::string& name,
                std::vector<int64_t>* received_splits, int process_set) {
  Handle h = rt.alltoall_async(tensor, splits, name, process_set);
  Tensor out = h.output();
  if (received_splits) *received_splits = h.received_splits();
  return out;
}

Tensor reducescatter(Runtime& rt, const Tensor& tensor, const std::string& name, ReduceOp op, int process_set) {
  return rt.reducescatter_async(tensor, name, op, process_set).output();
}

void barrier(Runtime& rt, int process_set) { rt.barrier_async(process_set).wait(); }
void barrier() { barrier(runtime()); }

int join(Runtime& rt) { return static_cast<int>(rt.join_async().value()); }

}  // namespace kolo
