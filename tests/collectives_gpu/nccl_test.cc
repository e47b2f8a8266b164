// NCCL backend tests under mpirun (1 or 2 ranks, one GPU each): every op and dtype against closed-form
// values from (seed, rank, index), fused vs unfused equality, scaling and compression in the fusion kernels,
// hierarchical allreduce over fake nodes, argument errors, and the watchdog turning a stuck collective into
// the same kolo::Error on every rank. All ranks agree on pass/fail at the end.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <thread>

#include "collectives/backend_factory.h"
#include "collectives/nccl/nccl_backend.h"
#include "collectives/nccl/nccl_fusion.h"
#include "collectives/nccl/nccl_hierarchical.h"
#include "core/device/cuda/cuda_stream.h"
#include "core/tensor/tensor.h"
#include "tests/common/collective_values.h"

namespace kolo {
namespace {

using testing::expected;
using testing::kDTypes;
using testing::kOps;
using testing::tolerance;
using testing::value;

Backends* g_host = nullptr;
DeviceBackends* g_dev = nullptr;

NcclBackend& world() { return static_cast<NcclBackend&>(*g_dev->world); }
Device gpu() { return Device::cuda(g_dev->device); }
Stream* compute() { return &current_cuda_stream(g_dev->device); }

Tensor make(DType dt, int64_t n, int seed, int rank, bool product = false) {
  return testing::rank_values(dt, n, seed, rank, product).to(gpu());
}

std::vector<double> to_host(const Tensor& t) { return t.to(Device::cpu()).to(DType::F64).to_vector<double>(); }


TEST(Nccl, FactoryPicksNcclOnlyWithDevices) {
  EXPECT_EQ(device_backend_fallback_order(true, 2), std::vector<std::string>{"nccl"});
  EXPECT_TRUE(device_backend_fallback_order(true, 0).empty());
  EXPECT_TRUE(device_backend_fallback_order(false, 8).empty());
  EXPECT_EQ(g_dev->name, "nccl");
  EXPECT_TRUE(world().accepts(gpu()));
  EXPECT_FALSE(world().accepts(Device::cpu()));
  EXPECT_EQ(g_dev->device, cuda_device_for_local_rank(g_host->local_rank));
}

TEST(Nccl, AllreduceEveryOpAndDtypeFusedAndAlone) {
  const int n = world().size(), r = world().rank();
  NcclFusion fusion(world());
  int seed = 0;
  for (DType dt : kDTypes)
    for (ReduceOp op : kOps) {
      ++seed;
      const bool prod = op == ReduceOp::Product;
      // Alone (direct path), then three tensors of odd lengths fused (pack/unpack path).
      std::vector<Tensor> ins = {make(dt, 1000, seed, r, prod), make(dt, 3, seed + 100, r, prod),
                                 make(dt, 0, seed, r), make(dt, 777, seed + 200, r, prod)};
      std::vector<Tensor> outs;
      for (auto& t : ins) outs.push_back(Tensor::empty(t.shape(), dt, gpu()));
      fusion.allreduce({{ins[0].data_ptr(), outs[0].data_ptr(), 1000}}, {dt, dt, op}, compute());
      std::vector<DeviceSpan> spans;
      for (size_t k = 1; k < ins.size(); ++k) spans.push_back({ins[k].data_ptr(), outs[k].data_ptr(), ins[k].numel()});
      fusion.allreduce(spans, {dt, dt, op}, compute());
      const int seeds[] = {seed, seed + 100, seed, seed + 200};
      for (size_t k = 0; k < ins.size(); ++k) {
        const auto got = to_host(outs[k]);
        for (size_t i = 0; i < got.size(); ++i) {
          const double want = expected(op, dt, seeds[k], n, static_cast<int64_t>(i));
          ASSERT_NEAR(got[i], want, tolerance(dt) * std::max(1.0, std::abs(want)))
              << dtype_name(dt) << " " << reduce_op_name(op) << " tensor " << k << " at " << i;
        }
      }
    }
}

TEST(Nccl, FusedEqualsUnfusedBitwise) {
  const int r = world().rank();
  NcclFusion fusion(world());
  std::vector<Tensor> a, fused, alone;
  std::vector<DeviceSpan> spans;
  for (int k = 0; k < 161; ++k) {  // ResNet-50's tensor count, lengths varied
    a.push_back(make(DType::F32, 1 + (k * 37) % 300, k, r));
    fused.push_back(Tensor::empty(a.back().shape(), DType::F32, gpu()));
    alone.push_back(Tensor::empty(a.back().shape(), DType::F32, gpu()));
    spans.push_back({a.back().data_ptr(), fused.back().data_ptr(), a.back().numel()});
  }
  fusion.allreduce(spans, {DType::F32, DType::F32, ReduceOp::Average, 0.5, 3.0}, compute());
  for (size_t k = 0; k < a.size(); ++k)
    fusion.allreduce({{a[k].data_ptr(), alone[k].data_ptr(), a[k].numel()}},
                     {DType::F32, DType::F32, ReduceOp::Average, 0.5, 3.0}, compute());
  for (size_t k = 0; k < a.size(); ++k) ASSERT_EQ(to_host(fused[k]), to_host(alone[k])) << "tensor " << k;
}

// Slices of flat buffers (a DistributedOptimizer's gradient slots, views of one storage each), listed in
// reverse: each buffer is one run reduced where it lies, no fusion buffer; more than a few runs, or a gap,
// still give the same values.
TEST(Nccl, InPlaceRunsOfFlatBuffers) {
  const int n = world().size(), r = world().rank();
  NcclFusion fusion(world());
  // 40 slices of varied lengths per buffer cover its first 3,780 of 4,099 elements (the rest is a gap).
  auto slice_len = [](int k) { return int64_t{1} + (k * 53) % 200; };
  int64_t covered = 0;
  for (int k = 0; k < 40; ++k) covered += slice_len(k);
  for (int buffers : {1, 2, 12})
    for (DType dt : {DType::F32, DType::BF16, DType::I32})
      for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Average, ReduceOp::Max}) {
        const int seed = 40 + buffers;
        const bool floating = is_floating(dt);
        const double pre = floating ? 0.5 : 1.0, post = floating ? 3.0 : 1.0;
        std::vector<Tensor> flats;
        std::vector<DeviceSpan> spans;
        for (int b = 0; b < buffers; ++b) {
          flats.push_back(make(dt, 4099, seed + b, r));
          int64_t off = 0;
          for (int k = 0; k < 40; ++k) {
            const int64_t len = slice_len(k);
            void* p0 = static_cast<uint8_t*>(flats.back().data_ptr()) + off * static_cast<int64_t>(dtype_size(dt));
            spans.push_back({p0, p0, len, flats.back().storage().get(), off});
            off += len;
          }
        }
        std::reverse(spans.begin(), spans.end());
        fusion.allreduce(spans, {dt, dt, op, pre, post}, compute());
        if (buffers <= 8)  // (the 12-buffer case runs last: only it may grow the fusion buffer)
          EXPECT_EQ(fusion.capacity(), 0) << buffers << " buffer(s) of slices went through the fusion buffer";
        else
          EXPECT_GT(fusion.capacity(), 0) << buffers << " runs were not packed";
        for (int b = 0; b < buffers; ++b) {
          const auto got = to_host(flats[b]);
          for (int64_t i = 0; i < 4099; ++i) {
            const double base = value(seed + b, r, i);
            const double want = i < covered ? expected(op, dt, seed + b, n, i) * pre * post : base;
            ASSERT_NEAR(got[i], want, tolerance(dt) * std::max(1.0, std::abs(want)))
                << buffers << " buffers, " << dtype_name(dt) << " " << reduce_op_name(op) << ", buffer " << b
                << " at " << i;
          }
        }
      }
}

TEST(Nccl, PrescalePostscaleAndCompression) {
  const int n = world().size(), r = world().rank();
  NcclFusion fusion(world());
  for (DType wire : {DType::F32, DType::BF16, DType::F16}) {
    Tensor x = make(DType::F32, 513, 7, r), y = Tensor::empty({513}, DType::F32, gpu());
    fusion.allreduce({{x.data_ptr(), y.data_ptr(), 513}, {x.data_ptr(), x.data_ptr(), 513}},
                     {DType::F32, wire, ReduceOp::Sum, 0.5, 4.0}, compute());
    const auto gy = to_host(y), gx = to_host(x);
    for (int64_t i = 0; i < 513; ++i) {
      const double want = expected(ReduceOp::Sum, DType::F32, 7, n, i) * 2.0;
      ASSERT_NEAR(gy[i], want, tolerance(wire) * std::max(1.0, std::abs(want))) << dtype_name(wire) << " at " << i;
      ASSERT_EQ(gx[i], gy[i]) << "in-place fused tensor differs at " << i;
    }
  }
}

TEST(Nccl, AllgatherUnevenAndEven) {
  const int n = world().size(), r = world().rank();
  for (bool even : {true, false}) {
    std::vector<int64_t> counts(n);
    for (int q = 0; q < n; ++q) counts[q] = even ? 5 : 3 + 2 * q;
    int64_t total = 0;
    for (int64_t c : counts) total += c;
    for (DType dt : {DType::F32, DType::BF16, DType::I64}) {
      Tensor in = make(dt, counts[r], 11, r), out = Tensor::empty({total}, dt, gpu());
      world().allgatherv(in.data_ptr(), out.data_ptr(), counts, dt, compute());
      const auto got = to_host(out);
      int64_t off = 0;
      for (int q = 0; q < n; ++q)
        for (int64_t i = 0; i < counts[q]; ++i, ++off) ASSERT_EQ(got[off], value(11, q, i)) << "rank " << q;
    }
  }
}

TEST(Nccl, BroadcastFromEveryRoot) {
  const int n = world().size(), r = world().rank();
  for (int root = 0; root < n; ++root)
    for (DType dt : kDTypes) {
      Tensor t = make(dt, 257, root, r);
      world().broadcast(t.data_ptr(), 257, dt, root, compute());
      const auto got = to_host(t);
      for (int64_t i = 0; i < 257; ++i) ASSERT_EQ(got[i], value(root, root, i)) << dtype_name(dt);
    }
}

TEST(Nccl, AlltoallvUneven) {
  const int n = world().size(), r = world().rank();
  // Rank r sends (r + q) % 3 + 1 elements to rank q; element i of that block is 100*r + 10*q + i.
  auto rows = [](int from, int to) { return static_cast<int64_t>((from + to) % 3 + 1); };
  std::vector<int64_t> sc(n), rc(n);
  std::vector<double> send;
  for (int q = 0; q < n; ++q) {
    sc[q] = rows(r, q);
    rc[q] = rows(q, r);
    for (int64_t i = 0; i < sc[q]; ++i) send.push_back(100.0 * r + 10.0 * q + i);
  }
  int64_t total = 0;
  for (int64_t c : rc) total += c;
  Tensor in = Tensor::from_vector(send, {static_cast<int64_t>(send.size())}).to(gpu());
  Tensor out = Tensor::empty({total}, DType::F64, gpu());
  world().alltoallv(in.data_ptr(), sc, out.data_ptr(), rc, DType::F64, compute());
  const auto got = to_host(out);
  int64_t off = 0;
  for (int q = 0; q < n; ++q)
    for (int64_t i = 0; i < rc[q]; ++i, ++off) ASSERT_EQ(got[off], 100.0 * q + 10.0 * r + i);
}

TEST(Nccl, ReducescatterEvenAndUneven) {
  const int n = world().size(), r = world().rank();
  for (bool even : {true, false})
    for (DType dt : {DType::F32, DType::F64, DType::I32}) {
      std::vector<int64_t> counts(n);
      for (int q = 0; q < n; ++q) counts[q] = even ? 4 : 2 + q;
      int64_t total = 0, mine_off = 0;
      for (int q = 0; q < n; ++q) {
        if (q < r) mine_off += counts[q];
        total += counts[q];
      }
      Tensor in = make(dt, total, 5, r), out = Tensor::empty({counts[r]}, dt, gpu());
      world().reducescatter(in.data_ptr(), out.data_ptr(), counts, dt, ReduceOp::Sum, compute());
      const auto got = to_host(out);
      for (int64_t i = 0; i < counts[r]; ++i)
        ASSERT_EQ(got[i], expected(ReduceOp::Sum, dt, 5, n, mine_off + i)) << dtype_name(dt) << " at " << i;
    }
}

TEST(Nccl, HierarchicalAllreduceOverFakeNodes) {
  // Every fake node size that divides the ranks: local NCCL reduce-scatter/allgather, host MPI across nodes.
  const int n = g_host->world->size(), r = g_host->world->rank();
  for (int node = 1; node <= n; ++node) {
    if (n % node) continue;
    Config cfg;
    cfg.backend = g_host->name;
    cfg.fake_local_size = node;
    Backends host = make_backends(cfg);
    NcclBackend local(*host.local, g_dev->device);
    NcclHierarchicalAllreduce h(local, *host.cross);
    for (DType dt : {DType::F32, DType::BF16, DType::I64})
      for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Average, ReduceOp::Max})
        for (int64_t len : {int64_t{1}, int64_t{1001}, int64_t{4096}}) {
          Tensor t = make(dt, len, 3 + static_cast<int>(len), r), out = Tensor::empty({len}, dt, gpu());
          h.allreduce(t.data_ptr(), out.data_ptr(), len, dt, op, compute());
          const auto got = to_host(out);
          for (int64_t i = 0; i < len; ++i) {
            const double want = expected(op, dt, 3 + static_cast<int>(len), n, i);
            ASSERT_NEAR(got[i], want, tolerance(dt) * std::max(1.0, std::abs(want)))
                << "node size " << node << " " << dtype_name(dt) << " " << reduce_op_name(op) << " len " << len;
          }
        }
  }
}

TEST(Nccl, ArgumentErrorsNameTheOp) {
  const int n = world().size();
  Tensor t = Tensor::zeros({4}, DType::I32, gpu());
  try {
    world().allgatherv(t.data_ptr(), t.data_ptr(), std::vector<int64_t>(n + 1, 1), DType::I32, compute());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nccl allgatherv: " + std::to_string(n + 1) + " counts"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(world().allreduce(t.data_ptr(), t.data_ptr(), 4, DType::I32, ReduceOp::Average, compute()), Error);
  EXPECT_THROW(world().broadcast(t.data_ptr(), 4, DType::I32, n, compute()), Error);
  NcclFusion fusion(world());
  EXPECT_THROW(fusion.allreduce({{t.data_ptr(), t.data_ptr(), 4}}, {DType::I32, DType::I32, ReduceOp::Sum, 2.0},
                                compute()),
               Error);
  world().barrier();  // the backend is still healthy after rejected calls
}

// A host callback blocks the compute stream, so the collective's ready event never fires: the watchdog must
// abort the communicator after KOLO_NCCL_TIMEOUT and throw a message that is identical on every rank.
std::atomic<bool> g_release{false};
void CUDART_CB hold_stream(void*) {
  for (int i = 0; i < 20000 && !g_release.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

// Small collectives run on the caller's stream, larger ones on the communication stream. Interleaved on one
// communicator — with compute-stream kernels between them that read each result, and with collectives
// ordered after nothing (no stream given) followed by inline ones that must not overtake them — every
// result must be the one of the collectives in issue order.
TEST(Nccl, InlineAndStreamCollectivesStayInOrder) {
  const int n = world().size();
  NcclOptions opts;
  opts.inline_bytes = 4096;
  NcclBackend b(*g_host->world, g_dev->device, opts);
  Tensor small = Tensor::ones({64}, DType::F32, gpu());       // 256 B: inline
  Tensor large = Tensor::ones({1 << 20}, DType::F32, gpu());  // 4 MiB: communication stream
  Tensor loose = Tensor::ones({1 << 20}, DType::F32, gpu());
  Tensor tiny = Tensor::ones({8}, DType::F32, gpu());
  current_cuda_stream(g_dev->device).synchronize();
  double want = 1, want_loose = 1;
  for (int k = 0; k < 6; ++k) {
    b.allreduce(small.data_ptr(), small.data_ptr(), small.numel(), DType::F32, ReduceOp::Sum, compute());
    large.copy_(small.slice(0, 0, 1).expand({1 << 20}));  // the large buffer takes the small one's value
    b.allreduce(large.data_ptr(), large.data_ptr(), large.numel(), DType::F32, ReduceOp::Sum, compute());
    small.copy_(large.slice(0, 0, 64));
    want *= static_cast<double>(n) * n;
    b.allreduce(loose.data_ptr(), loose.data_ptr(), loose.numel(), DType::F32, ReduceOp::Sum, nullptr);
    b.allreduce(tiny.data_ptr(), tiny.data_ptr(), tiny.numel(), DType::F32, ReduceOp::Sum, compute());
    want_loose *= n;
  }
  b.synchronize();
  EXPECT_EQ(to_host(small).back(), want);
  EXPECT_EQ(to_host(large).back(), want);
  EXPECT_EQ(to_host(loose).back(), want_loose);
  EXPECT_EQ(to_host(tiny).back(), want_loose);
}

TEST(Nccl, StuckCollectiveTimesOutWithTheSameErrorOnEveryRank) {
  for (int64_t inline_bytes : {int64_t{0}, int64_t{1} << 20}) {
  SCOPED_TRACE(inline_bytes ? "on the caller's stream" : "on the communication stream");
  NcclOptions opts;
  opts.timeout_s = 1.0;
  opts.inline_bytes = inline_bytes;
  NcclBackend b(*g_host->world, g_dev->device, opts);
  auto blocked = CudaStream::create(g_dev->device);
  Tensor t = Tensor::zeros({16}, DType::F32, gpu());
  current_cuda_stream(g_dev->device).synchronize();
  g_release = false;
  cudaLaunchHostFunc(blocked->get(), hold_stream, nullptr);
  b.allreduce(t.data_ptr(), t.data_ptr(), 16, DType::F32, ReduceOp::Sum, blocked.get());
  const auto t0 = std::chrono::steady_clock::now();
  // ncclCommAbort waits for work already queued behind the unmet dependency (measured on NCCL 2.28), so the
  // stream is released 3 s in, as a late peer would; the watchdog itself fires at the 1 s timeout.
  std::thread releaser([] {
    std::this_thread::sleep_for(std::chrono::seconds(3));
    g_release = true;
  });
  std::string msg;
  try {
    b.synchronize();
  } catch (const Error& e) {
    msg = e.what();
  }
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  releaser.join();
  blocked->synchronize();
  EXPECT_EQ(msg, "kolo: NCCL collective #1 (allreduce) failed; the NCCL communicator was aborted");
  EXPECT_GE(waited, 0.9);
  EXPECT_LT(waited, 10.0);
  // Later calls report the same failure instead of touching the aborted communicator.
  try {
    b.barrier();
    ADD_FAILURE() << "aborted backend accepted a barrier";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), msg);
  }
  }
}

}  // namespace
}  // namespace kolo

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  using namespace kolo;
  Config cfg;
  cfg.backend = "auto";
  Backends host = make_backends(cfg);
  // Skip on every rank together when a node has fewer GPUs than ranks (NCCL needs one device per rank).
  int64_t ok = visible_cuda_devices() >= host.local_size ? 1 : 0;
  host.world->allreduce(&ok, &ok, 1, DType::I64, ReduceOp::Min, nullptr);
  if (!ok) {
    if (host.world->rank() == 0)
      std::printf("SKIPPED: kolo_nccl_test needs one CUDA device per rank on each node (%d ranks per node, %d "
                  "devices visible here)\n", host.local_size, visible_cuda_devices());
    return 0;
  }
  DeviceBackends dev = make_device_backends(host);
  g_host = &host;
  g_dev = &dev;
  const int rc = RUN_ALL_TESTS();
  int64_t failed = rc != 0 ? 1 : 0;
  host.world->allreduce(&failed, &failed, 1, DType::I64, ReduceOp::Max, nullptr);
  return failed ? 1 : 0;
}
