// Execution of agreed collectives through the abstract Backend (host buffers) or DeviceCollectives (device ones).
#include "collectives/executor.h"

#include <algorithm>
#include <cstring>

#include "collectives/controller.h"
#include "collectives/memory_runs.h"
#include "collectives/reduce_kernels.h"
#include "core/device/device_backend.h"
#include "core/util/logging.h"

namespace kolo {
namespace {

using Clock = std::chrono::steady_clock;

DType wire_dtype(const Request& p) {
  const bool floating_wide = p.dtype == DType::F32 || p.dtype == DType::F64;
  if (!floating_wide) return p.dtype;
  if (p.compression == Compression::F16) return DType::F16;
  if (p.compression == Compression::BF16) return DType::BF16;
  return p.dtype;
}

int64_t row_elems(const Shape& s) {
  int64_t n = 1;
  for (size_t i = 1; i < s.size(); ++i) n *= s[i];
  return n;
}

// Average's divisor applies after the sum: floats fold it into the postscale, integers divide.
struct Finish {
  double scale = 1.0;
  int64_t int_divisor = 1;
};
Finish finish_for(const Request& p, int n) {
  Finish f;
  f.scale = p.postscale;
  if (p.reduce == ReduceOp::Average) {
    if (is_floating(p.dtype))
      f.scale /= n;
    else
      f.int_divisor = n;
  }
  return f;
}

void apply_finish(void* buf, int64_t count, DType dtype, const Finish& f) {
  coll::scale_buffer(buf, count, dtype, f.scale);
  if (f.int_divisor != 1) coll::divide_buffer(buf, count, dtype, f.int_divisor);
}

ReduceOp wire_op(ReduceOp op) { return op == ReduceOp::Average ? ReduceOp::Sum : op; }

// The group's runs of adjacent tensors (memory_runs.h) when every tensor is reduced in place; none otherwise.
std::vector<MemoryRun> in_place_runs(const std::vector<Tensor>& in, const std::vector<Tensor>& out) {
  std::vector<InPlaceSpan> spans;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!in[i].same(out[i])) return {};
    const bool some = out[i].numel() > 0;
    spans.push_back({some ? out[i].data_ptr() : nullptr, out[i].numel(), some ? out[i].storage().get() : nullptr,
                     out[i].offset()});
  }
  return adjacent_runs(spans);
}

// Whether the ranks of `b` must check that they cut the same runs before relying on them: a group that could
// hold a run of `min_count` elements joining several tensors. It depends only on what the ranks agreed (the
// tensors' element counts), so every rank asks, or none.
bool runs_need_agreement(const Backend& b, const std::vector<int64_t>& counts, int64_t min_count) {
  int64_t nonempty = 0, total = 0;
  for (int64_t c : counts) {
    nonempty += c > 0;
    total += c;
  }
  return b.size() > 1 && nonempty >= 2 && total >= min_count;
}

// Whether every rank of `b` cut the same runs (one 16-byte allreduce). Ranks whose layouts differ then all fall
// back together.
bool runs_agree(Backend& b, const std::vector<MemoryRun>& runs) {
  const uint64_t sig = runs.empty() ? 0 : run_signature(runs);
  int64_t v[2] = {static_cast<int64_t>(sig), static_cast<int64_t>(~sig)};  // max of both: max and ~min
  b.allreduce(v, v, 2, DType::I64, ReduceOp::Max, nullptr);
  return v[0] == static_cast<int64_t>(sig) && v[1] == static_cast<int64_t>(~sig);
}

std::string rows_args(size_t tensors, int64_t bytes, int64_t chunks) {
  return detail::concat("\"fused_tensors\":", tensors, ",\"bytes\":", bytes, ",\"chunks\":", chunks);
}

}  // namespace

const std::vector<Event*>& DeviceWork::after_allocation() {
  if (!allocated) {
    const Device dev = d.device();
    DeviceBackend& db = device_backend(dev.type);
    allocated = db.create_event(dev.index);
    allocated->record(db.current_stream(dev.index));
    ready.push_back(allocated.get());
  }
  return ready;
}

Executor::Executor(Backends backends, const Config& config, Timeline& timeline, CollectiveStats& stats)
    : backends_(std::move(backends)),
      config_(config),
      timeline_(timeline),
      stats_(stats),
      chunk_bytes_(config.allreduce_chunk_bytes),
      hierarchical_(config.hierarchical_allreduce && backends_.uniform_nodes && backends_.local_size > 1) {
  // Nodes of different sizes would give their ranks different reduce-scatter parts and cross-node partners
  // (Horovod turns it off there too).
  if (config.hierarchical_allreduce && !backends_.uniform_nodes && backends_.world->rank() == 0)
    KOLO_LOG(Warning, "KOLO_HIERARCHICAL_ALLREDUCE is ignored: the nodes hold different numbers of ranks, so "
                      "every allreduce is flat");
}

Executor::~Executor() = default;

Backend* Executor::process_set(int id) const {
  if (id == 0) return backends_.world.get();
  auto it = sets_.find(id);
  return it == sets_.end() ? nullptr : it->second.get();
}

Backend& Executor::member_set(const Request& p, const char* op) const {
  Backend* b = process_set(p.process_set);
  KOLO_CHECK(b, op, " '", p.name, "': this rank is not in process set ", p.process_set);
  return *b;
}

void Executor::create_process_set(int id, const std::vector<int>& ranks) {
  const bool member = std::find(ranks.begin(), ranks.end(), backends_.world->rank()) != ranks.end();
  auto b = backends_.world->split(member ? 0 : -1);
  if (b) sets_[id] = std::move(b);
  set_ranks_[id] = ranks;
  if (device_) device_->create_process_set(id, member);
}

DeviceCollectives& Executor::device_collectives(const Request& p) {
  if (!device_) {
    device_ = make_device_collectives(backends_);
    KOLO_CHECK(device_, op_type_name(p.op), " '", p.name, "': device tensors need a device backend, but kolo was ",
               "built without NCCL or a rank sees no CUDA device");
    const int me = backends_.world->rank();
    for (const auto& [id, ranks] : set_ranks_)
      device_->create_process_set(id, std::find(ranks.begin(), ranks.end(), me) != ranks.end());
  }
  return *device_;
}

void Executor::prepare(OpType op, const Request& p) {
  if (p.device != DeviceType::CPU && op != OpType::ProcessSetCreate) device_collectives(p);
}

void Executor::abort(const std::string& reason) {
  if (device_) device_->abort(reason);
  for (auto& [id, b] : sets_) b->abort(reason);
  if (backends_.local) backends_.local->abort(reason);
  if (backends_.cross) backends_.cross->abort(reason);
  if (backends_.world) backends_.world->abort(reason);
}

uint8_t* Executor::fusion_buffer(int64_t bytes) {
  if (bytes > fusion_capacity_) {
    fusion_.reset(new uint8_t[static_cast<size_t>(bytes)]);
    std::memset(fusion_.get(), 0, static_cast<size_t>(bytes));  // padding reduces as zeros
    fusion_capacity_ = bytes;
  }
  return fusion_.get();
}

void Executor::reduce_chunked(Backend& b, void* buf, int64_t count, DType dtype, ReduceOp op, bool hierarchical) {
  if (!hierarchical) {
    b.allreduce(buf, buf, count, dtype, op, nullptr);
    return;
  }
  // reduce-scatter in the node, allreduce of this rank's part across nodes, allgather in the node
  Backend& local = *backends_.local;
  const int ln = local.size();
  std::vector<int64_t> counts(ln);
  for (int r = 0; r < ln; ++r) counts[r] = count / ln + (r < count % ln ? 1 : 0);
  const int64_t mine = counts[local.rank()];
  scratch_.resize(static_cast<size_t>(std::max<int64_t>(mine, 1)) * dtype_size(dtype));
  local.reducescatter(buf, scratch_.data(), counts, dtype, op, nullptr);
  if (backends_.cross->size() > 1) backends_.cross->allreduce(scratch_.data(), scratch_.data(), mine, dtype, op, nullptr);
  local.allgatherv(scratch_.data(), buf, counts, dtype, nullptr);
}

void Executor::allreduce(const std::vector<TensorEntry*>& items, const std::vector<Request>& params) {
  const Request& p = params[0];
  Backend& b = member_set(p, "allreduce");
  const int n = b.size();
  const Finish fin = finish_for(p, n);
  const DType wire = wire_dtype(p);
  const ReduceOp op = wire_op(p.reduce);
  const bool hierarchical = hierarchical_ && p.process_set == 0;
  const int64_t wsize = static_cast<int64_t>(dtype_size(wire));
  const int64_t chunk_elems = chunk_bytes_ > 0 ? std::max<int64_t>(1, chunk_bytes_ / wsize) : INT64_MAX;
  const std::string activity = hierarchical ? "HIERARCHICAL_ALLREDUCE" : "ALLREDUCE";
  const auto t0 = Clock::now();

  // Joined ranks contribute zeros; every item gets an input and output of the agreed shape.
  std::vector<Tensor> in(items.size()), out(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i]) {
      in[i] = items[i]->input;
      out[i] = items[i]->output;
    } else {
      in[i] = out[i] = Tensor::zeros(params[i].shape, params[i].dtype);
    }
  }

  // A backend that reduces a list of buffers in place of a packed one (the shared-memory allreduce) takes the
  // whole group, a single tensor included: scales are folded into its copies, and nothing goes through the
  // fusion buffer.
  if (wire == p.dtype && !hierarchical && fin.int_divisor == 1) {
    std::vector<HostSpan> spans;
    int64_t bytes = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      spans.push_back({in[i].numel() > 0 ? in[i].data_ptr() : nullptr, out[i].numel() > 0 ? out[i].data_ptr() : nullptr,
                       out[i].numel()});
      bytes += out[i].numel() * wsize;
    }
    if (b.allreduce_spans(spans, p.dtype, op, p.prescale, fin.scale)) {
      ++stats_.collectives;
      stats_.bytes += bytes;
      if (items.size() > 1) {
        stats_.fused_tensors += static_cast<int64_t>(items.size());
        stats_.largest_fusion = std::max<int64_t>(stats_.largest_fusion, static_cast<int64_t>(items.size()));
      }
      if (timeline_.enabled()) {
        const auto t1 = Clock::now();
        const std::string args = rows_args(items.size(), bytes, 1);
        for (const Request& r : params) timeline_.span(r.name, activity, t0, t1, args);
      }
      return;
    }
  }

  // Reduces `count` elements at `base` where they lie, chunk by chunk: no copy through the fusion buffer. The
  // scales are whole passes before and after the chunks: scaling each chunk between MPI calls was measured
  // slower (the MPI path, a 102 MB group on 2 ranks: 40-41 ms against 38-39 ms).
  auto reduce_region = [&](void* base, int64_t count) {
    uint8_t* bytes = static_cast<uint8_t*>(base);
    coll::scale_buffer(bytes, count, p.dtype, p.prescale);
    int64_t chunks = 0;
    for (int64_t a = 0; a < count; a += chunk_elems, ++chunks)
      reduce_chunked(b, bytes + a * wsize, std::min(chunk_elems, count - a), p.dtype, op, hierarchical);
    apply_finish(bytes, count, p.dtype, fin);
    stats_.bytes += count * wsize;
    return chunks;
  };
  // The same for item i, after copying its input to its output when they differ.
  auto reduce_in_place = [&](size_t i) {
    const int64_t count = out[i].numel();
    if (count == 0) return reduce_region(nullptr, 0);
    if (!in[i].same(out[i])) std::memcpy(out[i].data_ptr(), in[i].data_ptr(), out[i].nbytes());
    return reduce_region(out[i].data_ptr(), count);
  };

  if (items.size() == 1 && wire == p.dtype) {
    const int64_t chunks = reduce_in_place(0);
    ++stats_.collectives;
    if (timeline_.enabled())
      timeline_.span(p.name, activity, t0, Clock::now(), rows_args(1, out[0].nbytes(), chunks));
    return;
  }

  // Regions of at least one chunk gain nothing from packing (they are reduced in chunks either way), so
  // without compression they are reduced where they lie and only the rest goes through the fusion buffer.
  // When every tensor is in place, a region is a run of adjacent tensors (the gradient slots of one flat
  // buffer form one run whatever order they arrived in), reduced in chunks that cross tensor boundaries;
  // otherwise it is one tensor.
  std::vector<bool> packed(items.size(), true);
  if (wire == p.dtype && chunk_bytes_ > 0) {
    std::vector<MemoryRun> runs = in_place_runs(in, out);
    std::vector<int64_t> counts;
    for (const Tensor& t : out) counts.push_back(t.numel());
    if (runs_need_agreement(b, counts, chunk_bytes_ / wsize) && !runs_agree(b, runs)) runs.clear();
    if (!runs.empty()) {
      for (const MemoryRun& r : runs) {
        if (r.count * wsize < chunk_bytes_) continue;
        const auto ts = Clock::now();
        const int64_t chunks = reduce_region(r.data, r.count);
        for (size_t i : r.members) packed[i] = false;
        if (timeline_.enabled()) {
          const auto te = Clock::now();
          const std::string args = rows_args(r.members.size(), r.count * wsize, chunks);
          for (size_t i : r.members) timeline_.span(params[i].name, activity, ts, te, args);
        }
      }
    } else {
      for (size_t i = 0; i < items.size(); ++i) {
        if (out[i].numel() * wsize < chunk_bytes_) continue;
        packed[i] = false;
        const auto ts = Clock::now();
        const int64_t chunks = reduce_in_place(i);
        if (timeline_.enabled())
          timeline_.span(params[i].name, activity, ts, Clock::now(), rows_args(1, out[i].nbytes(), chunks));
      }
    }
  }

  // Fused (or compressed): lay the tensors out in the fusion buffer, then pack/reduce/unpack per chunk.
  const int64_t align = kFusionAlignment / wsize;
  std::vector<int64_t> offset(items.size()), count(items.size());
  int64_t total = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    offset[i] = total;
    count[i] = packed[i] ? out[i].numel() : 0;
    total += (count[i] + align - 1) / align * align;
  }
  uint8_t* buf = fusion_buffer(std::max<int64_t>(total * wsize, 1));
  // Per-tensor copy times only for the timeline: four clock reads per tensor cost ~10% of a cycle of small ones.
  const bool timed = timeline_.enabled();
  std::vector<Clock::time_point> in_begin(timed ? items.size() : 0), in_end(in_begin.size()),
      out_begin(in_begin.size()), out_end(in_begin.size());
  int64_t chunks = 0;
  for (int64_t a = 0; a < total; a += chunk_elems, ++chunks) {
    const int64_t e = std::min(total, a + chunk_elems);
    for (size_t i = 0; i < items.size(); ++i) {
      const int64_t lo = std::max(a, offset[i]), hi = std::min(e, offset[i] + count[i]);
      if (lo >= hi) continue;
      if (timed && lo == offset[i]) in_begin[i] = Clock::now();
      const int64_t es = static_cast<int64_t>(dtype_size(p.dtype));
      coll::convert_buffer(static_cast<const uint8_t*>(in[i].data_ptr()) + (lo - offset[i]) * es, p.dtype,
                           buf + lo * wsize, wire, hi - lo, p.prescale);
      if (timed) in_end[i] = Clock::now();
    }
    reduce_chunked(b, buf + a * wsize, e - a, wire, op, hierarchical);
    for (size_t i = 0; i < items.size(); ++i) {
      const int64_t lo = std::max(a, offset[i]), hi = std::min(e, offset[i] + count[i]);
      if (lo >= hi) continue;
      if (timed && lo == offset[i]) out_begin[i] = Clock::now();
      const int64_t es = static_cast<int64_t>(dtype_size(p.dtype));
      void* dst = static_cast<uint8_t*>(out[i].data_ptr()) + (lo - offset[i]) * es;
      coll::convert_buffer(buf + lo * wsize, wire, dst, p.dtype, hi - lo, 1.0);
      apply_finish(dst, hi - lo, p.dtype, fin);
      if (timed) out_end[i] = Clock::now();
    }
  }
  const auto t1 = Clock::now();
  ++stats_.collectives;
  stats_.bytes += total * wsize;
  if (items.size() > 1) {
    stats_.fused_tensors += static_cast<int64_t>(items.size());
    stats_.largest_fusion = std::max<int64_t>(stats_.largest_fusion, static_cast<int64_t>(items.size()));
  }
  if (timeline_.enabled()) {
    const std::string args = rows_args(items.size(), total * wsize, chunks);
    for (size_t i = 0; i < items.size(); ++i) {
      if (!packed[i]) continue;
      timeline_.span(params[i].name, activity, t0, t1, args);
      if (count[i] == 0) continue;
      timeline_.span(params[i].name, "MEMCPY_IN_FUSION_BUFFER", in_begin[i], in_end[i]);
      timeline_.span(params[i].name, "MEMCPY_OUT_FUSION_BUFFER", out_begin[i], out_end[i]);
    }
  }
}

void Executor::allgather(TensorEntry& e, Backend& b, DeviceWork* dw) {
  const int n = b.size();
  const Tensor& in = e.input;
  const int64_t row = row_elems(in.shape());
  std::vector<int64_t> dims(n), ones(n, 1);
  const int64_t mine = in.size(0);
  b.allgatherv(&mine, dims.data(), ones, DType::I64, nullptr);
  Shape out_shape = in.shape();
  out_shape[0] = 0;
  std::vector<int64_t> counts(n);
  for (int r = 0; r < n; ++r) {
    out_shape[0] += dims[r];
    counts[r] = dims[r] * row;
  }
  e.output = Tensor::empty(out_shape, in.dtype(), in.device());
  if (dw)
    dw->d.allgatherv(e.req.process_set, in.data_ptr(), e.output.data_ptr(), counts, in.dtype(), dw->after_allocation());
  else
    b.allgatherv(in.data_ptr(), e.output.data_ptr(), counts, in.dtype(), nullptr);
  stats_.bytes += static_cast<int64_t>(e.output.nbytes());
}

void Executor::alltoall(TensorEntry& e, Backend& b, DeviceWork* dw) {
  const int n = b.size();
  const Tensor& in = e.input;
  const int64_t row = row_elems(in.shape());
  std::vector<int64_t> send_rows = e.splits, recv_rows(n), ones(n, 1);
  b.alltoallv(send_rows.data(), ones, recv_rows.data(), ones, DType::I64, nullptr);
  std::vector<int64_t> sc(n), rc(n);
  Shape out_shape = in.shape();
  out_shape[0] = 0;
  for (int r = 0; r < n; ++r) {
    // What one rank receives is known to it alone, so this can fail on one rank only, inside the collective.
    KOLO_CHECK(recv_rows[r] <= INT64_MAX - out_shape[0], "alltoall '", e.req.name, "': the rows received (",
               out_shape[0], " so far, then ", recv_rows[r], " from rank ", r, ") overflow int64");
    sc[r] = send_rows[r] * row;
    rc[r] = recv_rows[r] * row;
    out_shape[0] += recv_rows[r];
  }
  e.output = Tensor::empty(out_shape, in.dtype(), in.device());
  if (dw)
    dw->d.alltoallv(e.req.process_set, in.data_ptr(), sc, e.output.data_ptr(), rc, in.dtype(), dw->after_allocation());
  else
    b.alltoallv(in.data_ptr(), sc, e.output.data_ptr(), rc, in.dtype(), nullptr);
  e.state->received_splits = recv_rows;
  stats_.bytes += static_cast<int64_t>(in.nbytes());
}

void Executor::reducescatter(TensorEntry& e, Backend& b, DeviceWork* dw) {
  const int n = b.size();
  const Tensor& in = e.input;
  const int64_t rows = in.size(0), row = row_elems(in.shape());
  std::vector<int64_t> counts(n);
  for (int r = 0; r < n; ++r) counts[r] = (rows / n + (r < rows % n ? 1 : 0)) * row;
  Shape out_shape = in.shape();
  out_shape[0] = counts[b.rank()] / std::max<int64_t>(row, 1);
  if (row == 0) out_shape[0] = rows / n + (b.rank() < rows % n ? 1 : 0);
  e.output = Tensor::empty(out_shape, in.dtype(), in.device());
  if (dw) {
    dw->d.reducescatter(e.req.process_set, in.data_ptr(), e.output.data_ptr(), counts, in.dtype(), e.req.reduce,
                        e.req.postscale, dw->after_allocation());
  } else {
    b.reducescatter(in.data_ptr(), e.output.data_ptr(), counts, in.dtype(), wire_op(e.req.reduce), nullptr);
    apply_finish(e.output.data_ptr(), e.output.numel(), in.dtype(), finish_for(e.req, n));
  }
  stats_.bytes += static_cast<int64_t>(in.nbytes());
}

void Executor::allreduce_on_device(const std::vector<TensorEntry*>& items, const std::vector<Request>& params,
                                   DeviceWork& dw) {
  const Request& p = params[0];
  std::vector<DeviceSpan> spans;
  std::vector<const TensorEntry*> ready;  // per span: its entry when it has a ready event (nullptr: none)
  std::vector<Tensor>& zeros = dw.zeros;  // joined ranks contribute zeros of the agreed shape
  std::vector<int64_t> span_bytes;
  int64_t bytes = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i]) {
      const Tensor& o = items[i]->output;
      spans.push_back({items[i]->input.data_ptr(), o.data_ptr(), o.numel(), o.storage().get(), o.offset()});
      ready.push_back(items[i]->ready_event ? items[i] : nullptr);
    } else {
      zeros.push_back(Tensor::zeros(params[i].shape, params[i].dtype, dw.d.device()));
      spans.push_back({zeros.back().data_ptr(), zeros.back().data_ptr(), zeros.back().numel()});
      ready.push_back(nullptr);
    }
    span_bytes.push_back(spans.back().count * static_cast<int64_t>(dtype_size(p.dtype)));
    bytes += span_bytes.back();
  }
  const bool hierarchical = hierarchical_ && p.process_set == 0;
  Backend& host = member_set(p, "allreduce");
  // Buckets in the group's order (the order tensors were submitted, which is the order the device produces
  // them), each made to wait only for its own ready events; zeros were written on this thread's stream.
  std::vector<Event*> extra;
  if (!zeros.empty()) extra.push_back(dw.after_allocation().back());
  for (const auto& [begin, end] : plan_device_buckets(span_bytes, config_.device_bucket_bytes)) {
    // Only the latest ready event of each producing stream: it completes after every earlier one there.
    std::vector<const TensorEntry*> latest;
    for (size_t i = begin; i < end; ++i) {
      if (!ready[i]) continue;
      auto same = std::find_if(latest.begin(), latest.end(),
                               [&](const TensorEntry* e) { return e->ready_stream == ready[i]->ready_stream; });
      if (same == latest.end())
        latest.push_back(ready[i]);
      else if ((*same)->ready_seq < ready[i]->ready_seq)
        *same = ready[i];
    }
    std::vector<Event*> waits = extra;
    for (const TensorEntry* e : latest) waits.push_back(e->ready_event.get());
    const std::vector<DeviceSpan> part(spans.begin() + static_cast<std::ptrdiff_t>(begin),
                                       spans.begin() + static_cast<std::ptrdiff_t>(end));
    // Runs are reduced where they lie (without compression) only if every rank cut the same ones: a joined
    // rank's zeros, or another layout, would pair different bytes or hang NCCL. The runs are only cut here
    // when they must be checked (several tensors, several ranks).
    bool where_they_lie = true;
    if (wire_dtype(p) == p.dtype) {
      std::vector<int64_t> counts;
      for (const DeviceSpan& sp : part) counts.push_back(sp.count);
      where_they_lie = !runs_need_agreement(host, counts, 0) || runs_agree(host, in_place_runs(part));
    }
    dw.d.allreduce(part, p, hierarchical, where_they_lie, waits);
  }
  ++stats_.collectives;
  stats_.bytes += bytes;
  if (items.size() > 1) {
    stats_.fused_tensors += static_cast<int64_t>(items.size());
    stats_.largest_fusion = std::max<int64_t>(stats_.largest_fusion, static_cast<int64_t>(items.size()));
  }
  if (timeline_.enabled()) {
    dw.args = rows_args(items.size(), bytes, 1);
    dw.activity = hierarchical ? "NCCL_HIERARCHICAL_ALLREDUCE" : "NCCL_ALLREDUCE";
    for (const Request& r : params) dw.names.push_back(r.name);
  }
}

bool Executor::finished(DeviceWork& w) {
  if (!w.d.reached(w.fence)) return false;
  if (timeline_.enabled()) {
    const auto t1 = Clock::now();
    for (const std::string& name : w.names) timeline_.span(name, w.activity, w.launched, t1, w.args);
  }
  return true;
}

std::unique_ptr<DeviceWork> Executor::execute(OpType op, const std::vector<TensorEntry*>& items,
                                             const std::vector<Request>& params) {
  const Request& p = params[0];
  const auto t0 = Clock::now();
  std::unique_ptr<DeviceWork> dw;
  if (p.device != DeviceType::CPU && op != OpType::ProcessSetCreate) {
    dw = std::make_unique<DeviceWork>(device_collectives(p));
    dw->launched = t0;
    for (TensorEntry* it : items) {
      if (!it) continue;
      KOLO_CHECK(it->input.device() == dw->d.device(), op_type_name(op), " '", it->req.name, "': ",
                 it->input.describe(), " is not on this rank's ", dw->d.name(), " device ", dw->d.device().str());
      // A group's tensors on one device share their event (runtime.cc): waited for once.
      if (it->ready_event && (dw->ready.empty() || dw->ready.back() != it->ready_event.get()))
        dw->ready.push_back(it->ready_event.get());
    }
  }
  if (op == OpType::Allreduce) {
    if (dw) {
      allreduce_on_device(items, params, *dw);
      dw->fence = dw->d.fence();
    } else {
      allreduce(items, params);
    }
    return dw;
  }
  if (op == OpType::ProcessSetCreate) {
    create_process_set(p.root, p.ranks);
    if (items[0]) items[0]->state->value = p.root;
    return nullptr;
  }
  Backend& b = member_set(p, op_type_name(op));
  TensorEntry* e = items[0];
  KOLO_CHECK(e, op_type_name(op), " '", p.name, "': no local entry on this rank");
  switch (op) {
    case OpType::Allgather: allgather(*e, b, dw.get()); break;
    case OpType::Broadcast:
      if (e->output.numel() > 0) {
        if (dw)
          dw->d.broadcast(p.process_set, e->output.data_ptr(), e->output.numel(), e->output.dtype(), p.root, dw->ready);
        else
          b.broadcast(e->output.data_ptr(), e->output.numel(), e->output.dtype(), p.root, nullptr);
      }
      stats_.bytes += static_cast<int64_t>(e->output.nbytes());
      break;
    case OpType::Alltoall: alltoall(*e, b, dw.get()); break;
    case OpType::Reducescatter: reducescatter(*e, b, dw.get()); break;
    case OpType::Barrier: b.barrier(); break;
    default: KOLO_FAIL("executor: unexpected op ", op_type_name(op), " for '", p.name, "'");
  }
  ++stats_.collectives;
  if (!dw) {
    if (timeline_.enabled()) timeline_.span(p.name, op_type_name(op), t0, Clock::now(), rows_args(1, 0, 1));
    return nullptr;
  }
  dw->fence = dw->d.fence();
  if (timeline_.enabled()) {
    dw->activity = op_type_name(op);
    dw->args = rows_args(1, 0, 1);
    dw->names = {p.name};
  }
  return dw;
}

}  // namespace kolo
