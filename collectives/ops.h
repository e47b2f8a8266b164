// The user-facing collectives API: a default Runtime managed by kolo::init()/shutdown() for programs that
// want one, and blocking wrappers. Everything here forwards to a Runtime; pass your own Runtime to run
// two engines in one process or to reset between tests.
#pragma once

#include <string>
#include <vector>

#include "collectives/runtime.h"

namespace kolo {

// Creates the default runtime (idempotent while it lives). Works under mpirun/srun and without (size 1).
Runtime& init(Config config = Config::from_env());
void shutdown();          // collective; destroys the default runtime
bool initialized();
Runtime& runtime();       // the default runtime; throws when init() was not called

int rank();
int size();
int local_rank();
int local_size();
int cross_rank();
int cross_size();

// ---- blocking wrappers (on the default runtime, or on `rt`)
Tensor allreduce(Runtime& rt, const Tensor& tensor, const std::string& name, const AllreduceOptions& opts = {});
Tensor allreduce(const Tensor& tensor, const std::string& name, const AllreduceOptions& opts = {});
void grouped_allreduce(Runtime& rt, const std::vector<Tensor>& tensors, const std::vector<std::string>& names,
                       const AllreduceOptions& opts = {});
Tensor allgather(Runtime& rt, const Tensor& tensor, const std::string& name, int process_set = 0);
Tensor allgather(const Tensor& tensor, const std::string& name, int process_set = 0);
void broadcast(Runtime& rt, Tensor tensor, int root, const std::string& name, int process_set = 0);
void broadcast(Tensor tensor, int root, const std::string& name, int process_set = 0);
Tensor alltoall(Runtime& rt, const Tensor& tensor, const std::vector<int64_t>& splits, const std::string& name,
                std::vector<int64_t>* received_splits = nullptr, int process_set = 0);
Tensor reducescatter(Runtime& rt, const Tensor& tensor, const std::string& name, ReduceOp op = ReduceOp::Sum,
                     int process_set = 0);
void barrier(Runtime& rt, int process_set = 0);
void barrier();
int join(Runtime& rt);  // returns the last rank to join

}  // namespace kolo
