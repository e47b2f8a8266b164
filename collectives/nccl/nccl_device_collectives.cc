// NcclDeviceCollectives: the Executor's device collectives on NCCL communicators (see the header).
#include "collectives/nccl/nccl_device_collectives.h"

#include <deque>
#include <map>

#include "collectives/nccl/fusion_kernels.h"
#include "collectives/nccl/nccl_fusion.h"
#include "collectives/nccl/nccl_hierarchical.h"
#include "core/device/cuda/cuda_stream.h"

namespace kolo {
namespace {

DType wire_dtype(const Request& p) {
  if (!(p.dtype == DType::F32 || p.dtype == DType::F64)) return p.dtype;
  if (p.compression == Compression::F16) return DType::F16;
  if (p.compression == Compression::BF16) return DType::BF16;
  return p.dtype;
}

class NcclDeviceCollectives final : public DeviceCollectives {
 public:
  NcclDeviceCollectives(DeviceBackends devices, Backend& cross) : devices_(std::move(devices)), cross_(cross) {
    world_ = static_cast<NcclBackend*>(devices_.world.get());
    local_ = static_cast<NcclBackend*>(devices_.local.get());
  }

  const char* name() const override { return "nccl"; }
  Device device() const override { return Device::cuda(devices_.device); }

  void allreduce(const std::vector<DeviceSpan>& spans, const Request& p, bool hierarchical, bool where_they_lie,
                 const std::vector<Event*>& ready) override {
    FusedAllreduceSpec spec;
    spec.where_they_lie = where_they_lie;
    spec.dtype = p.dtype;
    spec.wire = wire_dtype(p);
    spec.op = p.reduce;
    spec.prescale = p.prescale;
    spec.postscale = p.postscale;
    if (hierarchical && p.process_set == 0 && local_->size() > 1) {
      if (!hierarchical_) hierarchical_ = std::make_unique<NcclHierarchicalAllreduce>(*local_, cross_);
      await(*local_, ready);
      fusion(-1).allreduce(spans, spec, nullptr, hierarchical_.get());
      return;
    }
    await(backend(p.process_set), ready);
    fusion(p.process_set).allreduce(spans, spec, nullptr);
  }

  void allgatherv(int ps, const void* send, void* recv, const std::vector<int64_t>& counts, DType dtype,
                  const std::vector<Event*>& ready) override {
    NcclBackend& b = backend(ps);
    await(b, ready);
    b.allgatherv(send, recv, counts, dtype, nullptr);
  }

  void broadcast(int ps, void* buf, int64_t count, DType dtype, int root, const std::vector<Event*>& ready) override {
    NcclBackend& b = backend(ps);
    await(b, ready);
    b.broadcast(buf, count, dtype, root, nullptr);
  }

  void alltoallv(int ps, const void* send, const std::vector<int64_t>& send_counts, void* recv,
                 const std::vector<int64_t>& recv_counts, DType dtype, const std::vector<Event*>& ready) override {
    NcclBackend& b = backend(ps);
    await(b, ready);
    b.alltoallv(send, send_counts, recv, recv_counts, dtype, nullptr);
  }

  void reducescatter(int ps, const void* send, void* recv, const std::vector<int64_t>& counts, DType dtype,
                     ReduceOp op, double postscale, const std::vector<Event*>& ready) override {
    NcclBackend& b = backend(ps);
    await(b, ready);
    // Floating Average is ncclAvg; integers sum and divide afterwards, like the fusion's unpack.
    const bool int_average = op == ReduceOp::Average && !is_floating(dtype);
    b.reducescatter(send, recv, counts, dtype, int_average ? ReduceOp::Sum : op, nullptr);
    // Whether the finishing step runs depends only on what the ranks agreed, never on this rank's share: a
    // rank with no rows still takes its turn, or its round-robin stream and sequence number would drift.
    if (postscale == 1.0 && !int_average) return;
    const int64_t mine = counts.at(b.rank());
    b.await_next(b.last_done());
    cudaStream_t s = b.begin("reducescatter_finish", nullptr);
    nccl::launch_convert_segments({{recv, recv, mine}}, dtype, dtype, postscale, int_average ? b.size() : 1, s);
    b.end(nullptr);
  }

  void create_process_set(int id, bool member) override {
    std::unique_ptr<Backend> b = world_->split(member ? 0 : -1);
    if (b) sets_[id].reset(static_cast<NcclBackend*>(b.release()));
  }

  uint64_t fence() override {
    Fence f{++fences_issued_, {{world_, world_->issued()}, {local_, local_->issued()}}};
    for (auto& [id, b] : sets_) f.marks.emplace_back(b.get(), b->issued());
    fences_.push_back(std::move(f));
    return fences_issued_;
  }

  bool reached(uint64_t fence) override {
    // Fences are reached in the order they were taken; each backend finishes its collectives in order.
    while (!fences_.empty() && fences_.front().id <= fence) {
      for (const auto& [b, seq] : fences_.front().marks)
        if (!b->finished_through(seq)) return false;
      fences_.pop_front();
    }
    return true;
  }

  std::vector<std::shared_ptr<Event>> done_events() override {
    std::vector<std::shared_ptr<Event>> events;
    auto add = [&](NcclBackend* b) {
      int64_t& mark = recorded_[b];
      if (b->issued() == mark) return;
      mark = b->issued();
      for (cudaStream_t s : b->streams()) {
        auto e = std::make_shared<CudaEvent>(b->device());
        e->record(s);
        events.push_back(std::move(e));
      }
    };
    add(world_);
    add(local_);
    for (auto& [id, b] : sets_) add(b.get());
    return events;
  }

  void synchronize() override {
    world_->synchronize();
    local_->synchronize();
    for (auto& [id, b] : sets_) b->synchronize();
  }

  void abort(const std::string& reason) override {
    for (auto& [id, b] : sets_) b->abort(reason);
    local_->abort(reason);
    world_->abort(reason);
  }

 private:
  NcclBackend& backend(int ps) {
    if (ps == 0) return *world_;
    auto it = sets_.find(ps);
    KOLO_CHECK(it != sets_.end(), "nccl: this rank has no communicator for process set ", ps);
    return *it->second;
  }

  // Fusion over process set `ps`'s backend; -1: over the node-local backend (hierarchical).
  NcclFusion& fusion(int ps) {
    auto& f = fusions_[ps];
    if (!f) f = std::make_unique<NcclFusion>(ps < 0 ? *local_ : backend(ps));
    return *f;
  }

  static void await(NcclBackend& b, const std::vector<Event*>& ready) {
    for (Event* e : ready) {
      auto* ce = dynamic_cast<CudaEvent*>(e);
      KOLO_CHECK(ce, "nccl: a ready event is not a CUDA event");
      b.await_next(ce->get());
    }
  }

  struct Fence {
    uint64_t id;
    std::vector<std::pair<NcclBackend*, int64_t>> marks;  // each backend's last collective at the fence
  };

  // Declaration order is destruction order reversed: fusions and the hierarchical scratch (which drain
  // their backends before freeing) go before the backends they use.
  DeviceBackends devices_;
  Backend& cross_;
  NcclBackend* world_ = nullptr;
  NcclBackend* local_ = nullptr;
  std::map<int, std::unique_ptr<NcclBackend>> sets_;
  std::map<int, std::unique_ptr<NcclFusion>> fusions_;
  std::unique_ptr<NcclHierarchicalAllreduce> hierarchical_;
  std::deque<Fence> fences_;  // not yet reached, oldest first
  std::map<NcclBackend*, int64_t> recorded_;  // each backend's last collective covered by done_events()
  uint64_t fences_issued_ = 0;
};

}  // namespace

std::unique_ptr<DeviceCollectives> make_nccl_device_collectives(DeviceBackends devices, Backend& cross) {
  return std::make_unique<NcclDeviceCollectives>(std::move(devices), cross);
}

}  // namespace kolo
