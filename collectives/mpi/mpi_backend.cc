// MPI data plane (blocking collectives on a duplicated communicator) and control plane (polled
// point-to-point with deadlines). bf16/f16 have no MPI type: they travel as MPI_UINT16_T and are reduced
// by user ops that compute in f32.
#include "collectives/mpi/mpi_backend.h"

#include <mpi.h>

#include <climits>
#include <mutex>
#include <cstdlib>
#include <thread>

#include "collectives/mpi/poll_backoff.h"
#include "collectives/mpi/shm_allreduce.h"
#include "collectives/reduce_kernels.h"
#include "core/util/logging.h"

namespace kolo {

#define KOLO_MPI_CHECK(call)                                                                        \
  do {                                                                                              \
    const int kolo_mpi_rc_ = (call);                                                                \
    if (kolo_mpi_rc_ != MPI_SUCCESS) {                                                              \
      char kolo_mpi_msg_[MPI_MAX_ERROR_STRING];                                                     \
      int kolo_mpi_len_ = 0;                                                                        \
      MPI_Error_string(kolo_mpi_rc_, kolo_mpi_msg_, &kolo_mpi_len_);                                \
      KOLO_FAIL("MPI call ", #call, " failed: ", std::string(kolo_mpi_msg_, kolo_mpi_len_));      \
    }                                                                                               \
  } while (0)

namespace {

template <ReduceOp OP>
void half_reduce_bf16(void* in, void* inout, int* len, MPI_Datatype*) {
  coll::reduce_into(inout, in, *len, DType::BF16, OP);
}
template <ReduceOp OP>
void half_reduce_f16(void* in, void* inout, int* len, MPI_Datatype*) {
  coll::reduce_into(inout, in, *len, DType::F16, OP);
}

MPI_Comm as_comm(void* c) { return reinterpret_cast<MPI_Comm>(c); }
void* as_opaque(MPI_Comm c) { return reinterpret_cast<void*>(c); }

int to_int_count(int64_t count, const char* op) {
  KOLO_CHECK(count >= 0 && count <= INT_MAX, "mpi ", op, ": count ", count,
             " exceeds MPI's int range (the allreduce path chunks; split this tensor)");
  return static_cast<int>(count);
}

std::vector<int> int_counts(const std::vector<int64_t>& counts, const char* op) {
  std::vector<int> out;
  out.reserve(counts.size());
  for (int64_t c : counts) out.push_back(to_int_count(c, op));
  return out;
}

std::vector<int> displacements(const std::vector<int>& counts) {
  std::vector<int> d(counts.size(), 0);
  int64_t acc = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    d[i] = to_int_count(acc, "displacement");
    acc += counts[i];
  }
  return d;
}

constexpr int kRequestTag = 17;
constexpr int kResponseTag = 18;

}  // namespace

// Owns MPI's lifetime for kolo: finalises only when kolo initialised it and every kolo communicator is gone.
class MpiContext {
 public:
  MpiContext() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      KOLO_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided));
      owns_mpi_ = true;
      if (provided < MPI_THREAD_MULTIPLE)
        KOLO_LOG(Warning, "MPI provides thread level ", provided, " < MPI_THREAD_MULTIPLE; do not call MPI "
                 "from other threads while kolo runs");
    }
    const std::pair<ReduceOp, MPI_User_function*> bf16_fns[] = {
        {ReduceOp::Sum, &half_reduce_bf16<ReduceOp::Sum>}, {ReduceOp::Min, &half_reduce_bf16<ReduceOp::Min>},
        {ReduceOp::Max, &half_reduce_bf16<ReduceOp::Max>}, {ReduceOp::Product, &half_reduce_bf16<ReduceOp::Product>}};
    const std::pair<ReduceOp, MPI_User_function*> f16_fns[] = {
        {ReduceOp::Sum, &half_reduce_f16<ReduceOp::Sum>}, {ReduceOp::Min, &half_reduce_f16<ReduceOp::Min>},
        {ReduceOp::Max, &half_reduce_f16<ReduceOp::Max>}, {ReduceOp::Product, &half_reduce_f16<ReduceOp::Product>}};
    for (auto [op, fn] : bf16_fns) KOLO_MPI_CHECK(MPI_Op_create(fn, 1, &bf16_ops_[static_cast<int>(op)]));
    for (auto [op, fn] : f16_fns) KOLO_MPI_CHECK(MPI_Op_create(fn, 1, &f16_ops_[static_cast<int>(op)]));
  }
  ~MpiContext() {
    for (int i = 0; i < 5; ++i) {
      if (bf16_ops_[i] != MPI_OP_NULL) MPI_Op_free(&bf16_ops_[i]);
      if (f16_ops_[i] != MPI_OP_NULL) MPI_Op_free(&f16_ops_[i]);
    }
    int finalized = 0;
    MPI_Finalized(&finalized);
    // After a lost rank MPI_Finalize could wait for the dead peer forever; leaving without it is the
    // lesser evil (mpirun reports the non-zero exit either way).
    if (owns_mpi_ && !finalized && !skip_finalize_) MPI_Finalize();
  }
  MPI_Op op(ReduceOp op, DType dtype) const {
    KOLO_CHECK(op != ReduceOp::Average, "mpi: Average must be lowered to Sum + scale");
    if (dtype == DType::BF16) return bf16_ops_[static_cast<int>(op)];
    if (dtype == DType::F16) return f16_ops_[static_cast<int>(op)];
    switch (op) {
      case ReduceOp::Sum: return MPI_SUM;
      case ReduceOp::Min: return MPI_MIN;
      case ReduceOp::Max: return MPI_MAX;
      case ReduceOp::Product: return MPI_PROD;
      case ReduceOp::Average: break;
    }
    return MPI_SUM;
  }
  static MPI_Datatype type(DType dtype) {
    switch (dtype) {
      case DType::F32: return MPI_FLOAT;
      case DType::F64: return MPI_DOUBLE;
      case DType::BF16:
      case DType::F16: return MPI_UINT16_T;
      case DType::I32: return MPI_INT32_T;
      case DType::I64: return MPI_INT64_T;
      case DType::U8: return MPI_UINT8_T;
    }
    return MPI_BYTE;
  }
  void skip_finalize() { skip_finalize_ = true; }
  // A send abandoned with MPI_Request_free (its receiver vanished) may still read its buffer, for as long as
  // MPI runs: the buffer is kept until after finalisation.
  void keep_until_finalized(std::vector<uint8_t> buffer) {
    std::lock_guard<std::mutex> lock(abandoned_mu_);
    abandoned_.push_back(std::move(buffer));
  }

  static std::shared_ptr<MpiContext> get() {
    // MPI itself is process-wide, so its owner is too; the weak_ptr only shares it between live backends
    // (two kolo runtimes in one process share one MPI) and lets the last one finalise.
    static std::mutex mu;
    static std::weak_ptr<MpiContext> current;
    std::lock_guard<std::mutex> lock(mu);
    auto ctx = current.lock();
    if (!ctx) {
      ctx = std::make_shared<MpiContext>();
      current = ctx;
    }
    return ctx;
  }

 private:
  bool owns_mpi_ = false;
  bool skip_finalize_ = false;
  std::mutex abandoned_mu_;
  std::vector<std::vector<uint8_t>> abandoned_;  // destroyed after ~MpiContext's body, which finalises
  MPI_Op bf16_ops_[5] = {MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL};
  MPI_Op f16_ops_[5] = {MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL};
};

bool mpi_launch_detected() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return true;
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_NTASKS", "MPI_LOCALNRANKS"})
    if (std::getenv(var)) return true;
  return false;
}

MpiBackend::MpiBackend(bool shm_allreduce) : ctx_(MpiContext::get()), shm_allreduce_(shm_allreduce) {
  MPI_Comm dup;
  KOLO_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &dup));
  KOLO_MPI_CHECK(MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN));
  comm_ = as_opaque(dup);
  MPI_Comm_rank(dup, &rank_);
  MPI_Comm_size(dup, &size_);
}

MpiBackend::MpiBackend(std::shared_ptr<MpiContext> ctx, void* comm, bool shm_allreduce)
    : ctx_(std::move(ctx)), comm_(comm), shm_allreduce_(shm_allreduce) {
  MPI_Comm_set_errhandler(as_comm(comm_), MPI_ERRORS_RETURN);
  MPI_Comm_rank(as_comm(comm_), &rank_);
  MPI_Comm_size(as_comm(comm_), &size_);
}

MpiBackend::~MpiBackend() {
  MPI_Comm c = as_comm(comm_);
  if (!aborted_ && c != MPI_COMM_NULL) MPI_Comm_free(&c);
}

ShmAllreduce* MpiBackend::shm(int64_t bytes) {
  // Every rank passes the same sizes, so every rank takes the same branch (and builds the segment in the
  // same call).
  if (!shm_allreduce_ || size_ < 2 || bytes < kShmMinBytes) return nullptr;
  if (!shm_tried_) {
    shm_tried_ = true;
    // The piece size must agree on every rank; the largest choice wins.
    const int cpus = static_cast<int>(std::thread::hardware_concurrency());
    int64_t slot = cpus > 0 && size_ > cpus ? kShmSlotBytesOversubscribed : kShmSlotBytes;
    MPI_Allreduce(MPI_IN_PLACE, &slot, 1, MPI_INT64_T, MPI_MAX, as_comm(comm_));
    shm_ = ShmAllreduce::create(comm_, slot);
  }
  return shm_.get();
}

bool MpiBackend::allreduce_spans(const std::vector<HostSpan>& spans, DType dtype, ReduceOp op, double prescale,
                                 double postscale) {
  int64_t count = 0;
  for (const HostSpan& s : spans) count += s.count;
  ShmAllreduce* segment = shm(count * static_cast<int64_t>(dtype_size(dtype)));
  if (!segment) return false;
  KOLO_CHECK(op != ReduceOp::Average, "mpi: Average must be lowered to Sum + scale");
  segment->allreduce_spans(spans, dtype, op, prescale, postscale);
  return true;
}

void MpiBackend::allreduce(const void* send, void* recv, int64_t count, DType dtype, ReduceOp op, Stream*) {
  if (ShmAllreduce* segment = shm(count * static_cast<int64_t>(dtype_size(dtype)))) {
    KOLO_CHECK(op != ReduceOp::Average, "mpi: Average must be lowered to Sum + scale");
    segment->allreduce(send, recv, count, dtype, op);
    return;
  }
  KOLO_MPI_CHECK(MPI_Allreduce(send == recv ? MPI_IN_PLACE : send, recv, to_int_count(count, "allreduce"),
                               MpiContext::type(dtype), ctx_->op(op, dtype), as_comm(comm_)));
}

void MpiBackend::allgatherv(const void* send, void* recv, const std::vector<int64_t>& counts, DType dtype, Stream*) {
  KOLO_CHECK(static_cast<int>(counts.size()) == size_, "mpi allgatherv: ", counts.size(), " counts for ", size_,
             " ranks");
  const auto c = int_counts(counts, "allgatherv");
  const auto d = displacements(c);
  KOLO_MPI_CHECK(MPI_Allgatherv(send, c[rank_], MpiContext::type(dtype), recv, c.data(), d.data(),
                                MpiContext::type(dtype), as_comm(comm_)));
}

void MpiBackend::broadcast(void* buf, int64_t count, DType dtype, int root, Stream*) {
  KOLO_CHECK(root >= 0 && root < size_, "mpi broadcast: root ", root, " out of range for ", size_, " ranks");
  KOLO_MPI_CHECK(MPI_Bcast(buf, to_int_count(count, "broadcast"), MpiContext::type(dtype), root, as_comm(comm_)));
}

void MpiBackend::alltoallv(const void* send, const std::vector<int64_t>& send_counts, void* recv,
                           const std::vector<int64_t>& recv_counts, DType dtype, Stream*) {
  KOLO_CHECK(static_cast<int>(send_counts.size()) == size_ && static_cast<int>(recv_counts.size()) == size_,
             "mpi alltoallv: counts must have one entry per rank (", size_, ")");
  const auto sc = int_counts(send_counts, "alltoallv");
  const auto rc = int_counts(recv_counts, "alltoallv");
  const auto sd = displacements(sc);
  const auto rd = displacements(rc);
  KOLO_MPI_CHECK(MPI_Alltoallv(send, sc.data(), sd.data(), MpiContext::type(dtype), recv, rc.data(), rd.data(),
                               MpiContext::type(dtype), as_comm(comm_)));
}

void MpiBackend::reducescatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType dtype,
                               ReduceOp op, Stream*) {
  KOLO_CHECK(static_cast<int>(counts.size()) == size_, "mpi reducescatter: ", counts.size(), " counts for ",
             size_, " ranks");
  const auto c = int_counts(counts, "reducescatter");
  KOLO_MPI_CHECK(MPI_Reduce_scatter(send, recv, c.data(), MpiContext::type(dtype), ctx_->op(op, dtype),
                                    as_comm(comm_)));
}

void MpiBackend::barrier() { KOLO_MPI_CHECK(MPI_Barrier(as_comm(comm_))); }

void MpiBackend::abort(const std::string& reason) {
  // Freeing a communicator with a dead member can block, and MPI_Finalize would too: leave both.
  aborted_ = true;
  ctx_->skip_finalize();
  KOLO_LOG(Error, "mpi backend aborted: ", reason);
}

std::unique_ptr<Backend> MpiBackend::split(int color) {
  MPI_Comm out = MPI_COMM_NULL;
  KOLO_MPI_CHECK(MPI_Comm_split(as_comm(comm_), color < 0 ? MPI_UNDEFINED : color, rank_, &out));
  if (out == MPI_COMM_NULL) return nullptr;
  return std::unique_ptr<Backend>(new MpiBackend(ctx_, as_opaque(out), shm_allreduce_));
}

std::vector<int> MpiBackend::node_ids() {
  MPI_Comm local;
  KOLO_MPI_CHECK(MPI_Comm_split_type(as_comm(comm_), MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local));
  int node = rank_;
  MPI_Bcast(&node, 1, MPI_INT, 0, local);
  MPI_Comm_free(&local);
  std::vector<int> ids(size_);
  KOLO_MPI_CHECK(MPI_Allgather(&node, 1, MPI_INT, ids.data(), 1, MPI_INT, as_comm(comm_)));
  return ids;
}

MpiControlPlane::MpiControlPlane() : ctx_(MpiContext::get()) {
  MPI_Comm dup;
  KOLO_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &dup));
  KOLO_MPI_CHECK(MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN));
  comm_ = as_opaque(dup);
  MPI_Comm_rank(dup, &rank_);
  MPI_Comm_size(dup, &size_);
}

MpiControlPlane::~MpiControlPlane() {
  // Not freed: MPI_Comm_free on a communicator whose peer died may block; MPI_Finalize reclaims it.
}

void MpiControlPlane::send_to_coordinator(const std::vector<uint8_t>& msg, Clock::time_point deadline) {
  // Sent from a buffer of this object's own, which can outlive the call if the send has to be abandoned.
  out_.assign(msg.begin(), msg.end());
  MPI_Request req;
  KOLO_MPI_CHECK(MPI_Isend(out_.data(), to_int_count(static_cast<int64_t>(out_.size()), "control send"), MPI_BYTE, 0,
                           kRequestTag, as_comm(comm_), &req));
  const auto started = Clock::now();
  for (;;) {
    int done = 0;
    KOLO_MPI_CHECK(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
    if (done) return;
    if (Clock::now() > deadline) {
      MPI_Request_free(&req);
      ctx_->keep_until_finalized(std::move(out_));
      out_ = {};
      throw coordinator_did_not_take();
    }
    poll_pause(started);
  }
}

std::vector<std::vector<uint8_t>> MpiControlPlane::gather_at_coordinator(Clock::time_point deadline) {
  std::vector<std::vector<uint8_t>> msgs(size_);
  std::vector<bool> got(size_, false);
  int missing = size_ - 1;
  const auto started = Clock::now();
  while (missing > 0) {
    int flag = 0;
    MPI_Status st;
    KOLO_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, kRequestTag, as_comm(comm_), &flag, &st));
    if (flag) {
      int n = 0;
      MPI_Get_count(&st, MPI_BYTE, &n);
      KOLO_CHECK(!got[st.MPI_SOURCE], "control plane: rank ", st.MPI_SOURCE, " sent twice in one cycle");
      msgs[st.MPI_SOURCE].resize(n);
      KOLO_MPI_CHECK(MPI_Recv(msgs[st.MPI_SOURCE].data(), n, MPI_BYTE, st.MPI_SOURCE, kRequestTag, as_comm(comm_),
                              MPI_STATUS_IGNORE));
      got[st.MPI_SOURCE] = true;
      --missing;
      continue;
    }
    if (Clock::now() > deadline) throw_first_silent(got);
    poll_pause(started);
  }
  return msgs;
}

void MpiControlPlane::send_from_coordinator(const std::vector<uint8_t>& msg, const std::vector<int>& to) {
  out_.assign(msg.begin(), msg.end());
  std::vector<MPI_Request> reqs(to.size());
  for (size_t i = 0; i < to.size(); ++i)
    KOLO_MPI_CHECK(MPI_Isend(out_.data(), to_int_count(static_cast<int64_t>(out_.size()), "control send"), MPI_BYTE,
                             to[i], kResponseTag, as_comm(comm_), &reqs[i]));
  const auto started = Clock::now();
  const auto deadline = started + std::chrono::seconds(5);
  for (;;) {
    int done = 0;
    KOLO_MPI_CHECK(MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE));
    if (done) return;
    if (Clock::now() > deadline) {
      // A receiver that vanished: its silence will be reported by the next gather.
      for (auto& r : reqs)
        if (r != MPI_REQUEST_NULL) MPI_Request_free(&r);
      ctx_->keep_until_finalized(std::move(out_));
      out_ = {};
      return;
    }
    poll_pause(started);
  }
}

std::vector<uint8_t> MpiControlPlane::receive_from_coordinator(Clock::time_point deadline) {
  const auto started = Clock::now();
  for (;;) {
    int flag = 0;
    MPI_Status st;
    KOLO_MPI_CHECK(MPI_Iprobe(0, kResponseTag, as_comm(comm_), &flag, &st));
    if (flag) {
      int n = 0;
      MPI_Get_count(&st, MPI_BYTE, &n);
      std::vector<uint8_t> msg(n);
      KOLO_MPI_CHECK(MPI_Recv(msg.data(), n, MPI_BYTE, 0, kResponseTag, as_comm(comm_), MPI_STATUS_IGNORE));
      return msg;
    }
    if (Clock::now() > deadline) throw coordinator_did_not_reply();
    poll_pause(started);
  }
}

}  // namespace kolo
