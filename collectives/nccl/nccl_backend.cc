// NcclBackend: communicators bootstrapped over a host backend, dedicated streams ordered with events, and
// the asynchronous-error / timeout watchdog that turns a hung or failed NCCL collective into kolo::Error.
#include "collectives/nccl/nccl_backend.h"

#include <algorithm>
#include <numeric>
#include <thread>

#include "core/device/cuda/cuda_check.h"
#include "core/util/env.h"
#include "core/util/logging.h"

namespace kolo {

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::F32: return ncclFloat32;
    case DType::F64: return ncclFloat64;
    case DType::BF16: return ncclBfloat16;
    case DType::F16: return ncclFloat16;
    case DType::I32: return ncclInt32;
    case DType::I64: return ncclInt64;
    case DType::U8: return ncclUint8;
  }
  return ncclUint8;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Min: return ncclMin;
    case ReduceOp::Max: return ncclMax;
    case ReduceOp::Product: return ncclProd;
    case ReduceOp::Average: return ncclAvg;
  }
  return ncclSum;
}

namespace {

ncclRedOp_t checked_op(ReduceOp op, DType dtype, const char* what) {
  KOLO_CHECK(op != ReduceOp::Average || is_floating(dtype), "nccl ", what, ": Average of ", dtype_name(dtype),
             " must be lowered to Sum and an integer division");
  return nccl_op(op);
}

const uint8_t* at(const void* base, int64_t elems, DType dtype) {
  return static_cast<const uint8_t*>(base) + elems * static_cast<int64_t>(dtype_size(dtype));
}
uint8_t* at(void* base, int64_t elems, DType dtype) {
  return static_cast<uint8_t*>(base) + elems * static_cast<int64_t>(dtype_size(dtype));
}

size_t as_count(int64_t n, const char* what) {
  KOLO_CHECK(n >= 0, "nccl ", what, ": negative count ", n);
  return static_cast<size_t>(n);
}

bool all_equal(const std::vector<int64_t>& v) {
  return std::all_of(v.begin(), v.end(), [&](int64_t x) { return x == v.front(); });
}

int64_t total_bytes(const std::vector<int64_t>& counts, DType dtype) {
  return std::accumulate(counts.begin(), counts.end(), int64_t{0}) * static_cast<int64_t>(dtype_size(dtype));
}

void check_counts(const std::vector<int64_t>& counts, int size, const char* what) {
  KOLO_CHECK(static_cast<int>(counts.size()) == size, "nccl ", what, ": ", counts.size(), " counts for ", size,
             " ranks");
}

cudaStream_t native(Stream* s) {
  if (!s) return nullptr;
  KOLO_CHECK(s->device().is_cuda(), "nccl: ordering stream is on ", s->device().str(), ", not a CUDA device");
  return static_cast<cudaStream_t>(s->native());
}

}  // namespace

NcclOptions NcclOptions::from_env() {
  NcclOptions o;
  o.num_streams = static_cast<int>(env::get_int("KOLO_NUM_NCCL_STREAMS", o.num_streams));
  o.timeout_s = env::get_double("KOLO_NCCL_TIMEOUT", o.timeout_s);
  o.inline_bytes = env::get_int("KOLO_NCCL_INLINE_BYTES", o.inline_bytes);
  KOLO_CHECK(o.num_streams >= 1 && o.num_streams <= 16, "KOLO_NUM_NCCL_STREAMS must be in [1, 16], got ",
             o.num_streams);
  KOLO_CHECK(o.timeout_s > 0, "KOLO_NCCL_TIMEOUT must be > 0 s, got ", o.timeout_s);
  KOLO_CHECK(o.inline_bytes >= 0, "KOLO_NCCL_INLINE_BYTES must be >= 0, got ", o.inline_bytes);
  return o;
}

int visible_cuda_devices() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

int cuda_device_for_local_rank(int local_rank) {
  const int n = visible_cuda_devices();
  KOLO_CHECK(n > 0, "nccl: local rank ", local_rank, " sees no CUDA device (check CUDA_VISIBLE_DEVICES)");
  return local_rank % n;
}

NcclBackend::NcclBackend(Backend& bootstrap, int device, NcclOptions options)
    : device_(device), options_(options), rank_(bootstrap.rank()), size_(bootstrap.size()) {
  KOLO_CUDA_CHECK(cudaSetDevice(device_));
  ncclUniqueId id{};
  if (rank_ == 0) KOLO_NCCL_CHECK(ncclGetUniqueId(&id));
  bootstrap.broadcast(&id, static_cast<int64_t>(sizeof(id)), DType::U8, 0, nullptr);
  ncclComm_t first = nullptr;
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  KOLO_NCCL_CHECK(ncclCommInitRankConfig(&first, size_, id, rank_, &config));
  comms_.push_back(first);
  create_streams();
}

NcclBackend::NcclBackend(int device, NcclOptions options, std::vector<ncclComm_t> comms)
    : device_(device), options_(options), comms_(std::move(comms)) {
  KOLO_NCCL_CHECK(ncclCommUserRank(comms_[0], &rank_));
  KOLO_NCCL_CHECK(ncclCommCount(comms_[0], &size_));
  create_streams();
}

void NcclBackend::create_streams() {
  // Each extra stream gets its own communicator: NCCL serialises one communicator's work, so independent
  // streams need independent communicators to overlap.
  while (static_cast<int>(comms_.size()) < options_.num_streams) {
    ncclComm_t c = nullptr;
    KOLO_NCCL_CHECK(ncclCommSplit(comms_[0], 0, rank_, &c, nullptr));
    comms_.push_back(c);
  }
  int least = 0, greatest = 0;
  KOLO_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  for (size_t i = 0; i < comms_.size(); ++i) {
    cudaStream_t s = nullptr;
    // Highest priority: a gradient's allreduce should not queue behind the backward kernels it overlaps.
    KOLO_CUDA_CHECK(cudaStreamCreateWithPriority(&s, cudaStreamNonBlocking, greatest));
    streams_.push_back(s);
  }
  last_seq_.assign(comms_.size(), 0);
  last_done_.assign(comms_.size(), nullptr);
  last_stream_.assign(streams_.begin(), streams_.end());
  KOLO_CUDA_CHECK(cudaEventCreateWithFlags(&ready_event_, cudaEventDisableTiming));
}

NcclBackend::~NcclBackend() {
  cudaSetDevice(device_);
  if (error_.empty()) {
    // Destroying a communicator with work in flight is undefined; wait for it (errors are moot here).
    for (cudaStream_t s : streams_) cudaStreamSynchronize(s);
    for (ncclComm_t c : comms_) ncclCommDestroy(c);
  }
  for (auto& p : pending_) cudaEventDestroy(p.done);
  for (cudaEvent_t e : free_events_) cudaEventDestroy(e);
  if (ready_event_) cudaEventDestroy(ready_event_);
  for (cudaStream_t s : streams_) cudaStreamDestroy(s);
  if (barrier_buf_) cudaFree(barrier_buf_);
}

cudaEvent_t NcclBackend::take_event() {
  if (!free_events_.empty()) {
    cudaEvent_t e = free_events_.back();
    free_events_.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  KOLO_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return e;
}

void NcclBackend::fail(const std::string& reason) {
  // The thrown text is rank-independent on purpose (see the header); the reason goes to the log.
  const std::string msg =
      detail::concat("kolo: NCCL collective #", pending_.empty() ? seq_ : pending_.front().seq, " (",
                     pending_.empty() ? current_op_ : pending_.front().op, ") failed; the NCCL communicator was aborted");
  KOLO_LOG(Error, msg, ": ", reason);
  for (ncclComm_t c : comms_) ncclCommAbort(c);
  comms_.clear();
  error_ = msg;
  throw Error(error_);
}

void NcclBackend::poll() {
  if (!error_.empty()) throw Error(error_);
  while (!pending_.empty()) {
    const cudaError_t q = cudaEventQuery(pending_.front().done);
    if (q == cudaErrorNotReady) break;
    if (q != cudaSuccess) {
      (void)cudaGetLastError();
      fail(detail::concat("CUDA error ", cudaGetErrorName(q), " on the communication stream"));
    }
    free_events_.push_back(pending_.front().done);
    pending_.pop_front();
  }
  // The asynchronous-error query is rate-limited: the background thread polls launched work often, and
  // each query is a driver call that competes with the training thread's kernel launches.
  const auto now = std::chrono::steady_clock::now();
  if (now - last_error_check_ >= std::chrono::milliseconds(1)) {
    last_error_check_ = now;
    check_async_errors();
  }
  check_age(now);
}

void NcclBackend::check_async_errors() {
  for (ncclComm_t c : comms_) {
    ncclResult_t async = ncclSuccess;
    const ncclResult_t rc = ncclCommGetAsyncError(c, &async);
    if (rc != ncclSuccess) fail(detail::concat("ncclCommGetAsyncError: ", ncclGetErrorString(rc)));
    if (async != ncclSuccess && async != ncclInProgress)
      fail(detail::concat("asynchronous NCCL error: ", ncclGetErrorString(async), " (", ncclGetLastError(c), ")"));
  }
}

void NcclBackend::check_age(std::chrono::steady_clock::time_point now) {
  if (pending_.empty()) return;
  const double age = std::chrono::duration<double>(now - pending_.front().started).count();
  if (age > options_.timeout_s)
    fail(detail::concat("no progress for ", age, " s (KOLO_NCCL_TIMEOUT=", options_.timeout_s,
                        "): a peer is missing or hung"));
}

void NcclBackend::synchronize() {
  const auto started = std::chrono::steady_clock::now();
  for (;;) {
    poll();
    if (pending_.empty()) return;
    // Spin briefly (most collectives finish in microseconds), then sleep so peers sharing cores can run.
    if (std::chrono::steady_clock::now() - started < std::chrono::microseconds(200))
      std::this_thread::yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

cudaStream_t NcclBackend::begin(const char* op, Stream* ready, int64_t bytes) {
  poll();
  KOLO_CUDA_CHECK(cudaSetDevice(device_));
  current_ = next_;
  next_ = (next_ + 1) % static_cast<int>(streams_.size());
  ++seq_;
  current_op_ = op;
  cudaStream_t compute = native(ready);
  const bool on_compute = compute && bytes <= options_.inline_bytes;
  cudaStream_t s = on_compute ? compute : streams_[current_];
  if (compute && !on_compute) {
    // Waiting captures the event's state at this call, so the one ready event is reusable at once.
    KOLO_CUDA_CHECK(cudaEventRecord(ready_event_, compute));
    KOLO_CUDA_CHECK(cudaStreamWaitEvent(s, ready_event_, 0));
  }
  // The communicator's previous collective ran on another stream and is still pending (so its done event
  // has not been recycled): this one must not overtake it.
  const int64_t prev = last_seq_[current_];
  if (last_stream_[current_] != s && !pending_.empty() && pending_.front().seq <= prev)
    KOLO_CUDA_CHECK(cudaStreamWaitEvent(s, last_done_[current_], 0));
  for (cudaEvent_t e : awaited_) KOLO_CUDA_CHECK(cudaStreamWaitEvent(s, e, 0));
  awaited_.clear();
  active_ = s;
  return s;
}

void NcclBackend::await_next(cudaEvent_t event) {
  if (event) awaited_.push_back(event);
}

void NcclBackend::end(Stream* consumer) {
  cudaEvent_t done = take_event();
  KOLO_CUDA_CHECK(cudaEventRecord(done, active_));
  pending_.push_back({done, seq_, current_op_, std::chrono::steady_clock::now()});
  last_seq_[current_] = seq_;
  last_done_[current_] = done;
  last_stream_[current_] = active_;
  cudaStream_t compute = native(consumer);
  if (compute && compute != active_) KOLO_CUDA_CHECK(cudaStreamWaitEvent(compute, done, 0));
}

void NcclBackend::allreduce(const void* send, void* recv, int64_t count, DType dtype, ReduceOp op, Stream* stream) {
  const ncclRedOp_t nop = checked_op(op, dtype, "allreduce");
  cudaStream_t s = begin("allreduce", stream, count * static_cast<int64_t>(dtype_size(dtype)));
  KOLO_NCCL_CHECK(ncclAllReduce(send, recv, as_count(count, "allreduce"), nccl_type(dtype), nop, comm(), s));
  end(stream);
}

void NcclBackend::allgatherv(const void* send, void* recv, const std::vector<int64_t>& counts, DType dtype,
                             Stream* stream) {
  check_counts(counts, size_, "allgatherv");
  cudaStream_t s = begin("allgatherv", stream, total_bytes(counts, dtype));
  if (all_equal(counts)) {
    KOLO_NCCL_CHECK(ncclAllGather(send, recv, as_count(counts[0], "allgatherv"), nccl_type(dtype), comm(), s));
  } else {
    // Uneven first dims: each rank broadcasts its block into place, all in one grouped launch.
    KOLO_NCCL_CHECK(ncclGroupStart());
    int64_t offset = 0;
    for (int r = 0; r < size_; ++r) {
      uint8_t* dst = at(recv, offset, dtype);
      if (counts[r] > 0)
        KOLO_NCCL_CHECK(ncclBroadcast(r == rank_ ? send : dst, dst, as_count(counts[r], "allgatherv"),
                                      nccl_type(dtype), r, comm(), s));
      offset += counts[r];
    }
    KOLO_NCCL_CHECK(ncclGroupEnd());
  }
  end(stream);
}

void NcclBackend::broadcast(void* buf, int64_t count, DType dtype, int root, Stream* stream) {
  KOLO_CHECK(root >= 0 && root < size_, "nccl broadcast: root ", root, " out of range for ", size_, " ranks");
  cudaStream_t s = begin("broadcast", stream, count * static_cast<int64_t>(dtype_size(dtype)));
  KOLO_NCCL_CHECK(ncclBroadcast(buf, buf, as_count(count, "broadcast"), nccl_type(dtype), root, comm(), s));
  end(stream);
}

void NcclBackend::alltoallv(const void* send, const std::vector<int64_t>& send_counts, void* recv,
                            const std::vector<int64_t>& recv_counts, DType dtype, Stream* stream) {
  check_counts(send_counts, size_, "alltoallv");
  check_counts(recv_counts, size_, "alltoallv");
  const int64_t bytes = std::max(total_bytes(send_counts, dtype), total_bytes(recv_counts, dtype));
  cudaStream_t s = begin("alltoallv", stream, bytes);
  KOLO_NCCL_CHECK(ncclGroupStart());
  int64_t so = 0, ro = 0;
  for (int r = 0; r < size_; ++r) {
    if (send_counts[r] > 0)
      KOLO_NCCL_CHECK(ncclSend(at(send, so, dtype), as_count(send_counts[r], "alltoallv"), nccl_type(dtype), r,
                               comm(), s));
    if (recv_counts[r] > 0)
      KOLO_NCCL_CHECK(ncclRecv(at(recv, ro, dtype), as_count(recv_counts[r], "alltoallv"), nccl_type(dtype), r,
                               comm(), s));
    so += send_counts[r];
    ro += recv_counts[r];
  }
  KOLO_NCCL_CHECK(ncclGroupEnd());
  end(stream);
}

void NcclBackend::reducescatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType dtype,
                                ReduceOp op, Stream* stream) {
  check_counts(counts, size_, "reducescatter");
  const ncclRedOp_t nop = checked_op(op, dtype, "reducescatter");
  cudaStream_t s = begin("reducescatter", stream, total_bytes(counts, dtype));
  if (all_equal(counts)) {
    KOLO_NCCL_CHECK(ncclReduceScatter(send, recv, as_count(counts[0], "reducescatter"), nccl_type(dtype), nop,
                                      comm(), s));
  } else {
    // Uneven blocks: one reduce per rank to that rank, grouped into a single launch.
    KOLO_NCCL_CHECK(ncclGroupStart());
    int64_t offset = 0;
    for (int r = 0; r < size_; ++r) {
      if (counts[r] > 0)
        KOLO_NCCL_CHECK(ncclReduce(at(send, offset, dtype), recv, as_count(counts[r], "reducescatter"),
                                   nccl_type(dtype), nop, r, comm(), s));
      offset += counts[r];
    }
    KOLO_NCCL_CHECK(ncclGroupEnd());
  }
  end(stream);
}

void NcclBackend::barrier() {
  if (!barrier_buf_) {
    KOLO_CUDA_CHECK(cudaSetDevice(device_));
    KOLO_CUDA_CHECK(cudaMalloc(&barrier_buf_, sizeof(int32_t)));
    KOLO_CUDA_CHECK(cudaMemset(barrier_buf_, 0, sizeof(int32_t)));
  }
  allreduce(barrier_buf_, barrier_buf_, 1, DType::I32, ReduceOp::Sum, nullptr);
  synchronize();
}

void NcclBackend::abort(const std::string& reason) {
  if (!error_.empty()) return;
  KOLO_LOG(Error, "nccl backend aborted: ", reason);
  for (ncclComm_t c : comms_) ncclCommAbort(c);
  comms_.clear();
  error_ = "kolo: NCCL backend aborted: " + reason;
}

std::unique_ptr<Backend> NcclBackend::split(int color) {
  poll();
  KOLO_CUDA_CHECK(cudaSetDevice(device_));
  ncclComm_t c = nullptr;
  KOLO_NCCL_CHECK(ncclCommSplit(comms_[0], color < 0 ? NCCL_SPLIT_NOCOLOR : color, rank_, &c, nullptr));
  if (color < 0 || c == nullptr) return nullptr;
  return std::unique_ptr<Backend>(new NcclBackend(device_, options_, {c}));
}

}  // namespace kolo
