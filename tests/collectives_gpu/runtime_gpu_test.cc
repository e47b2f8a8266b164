// The collectives Runtime on CUDA tensors under mpirun (1 or 2 ranks, one GPU each), through the public API
// (kolo::allreduce, allgather, broadcast, alltoall, reducescatter on a Runtime): every op and dtype against
// closed-form values from (seed, rank, index), fused == unfused, device mismatches reported as errors, and a
// DistributedOptimizer on GPU at N ranks equal to one GPU with an N-times larger batch. Skips on every rank
// together when a node has fewer GPUs than ranks; all ranks agree on pass/fail at the end.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <thread>

#include "collectives/ops.h"
#include "core/device/cuda/cuda_stream.h"
#include "core/device/device_backend.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/reduce.h"
#include "optim/distributed_optimizer.h"
#include "optim/sgd.h"
#include "tests/common/collective_values.h"

namespace kolo {
namespace {

using testing::expected;
using testing::kDTypes;
using testing::kOps;
using testing::tolerance;
using testing::value;

Runtime* g_rt = nullptr;
Device g_gpu;

std::vector<double> host_values(const Tensor& t) {
  return t.to(Device::cpu()).to(DType::F64).to_vector<double>();
}

// Values value(seed, rank, base + i) for i < numel, shaped `shape`, on the GPU.
Tensor gpu_values(DType dt, const Shape& shape, int seed, int rank, int64_t base = 0) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = value(seed, rank, base + i);
  return Tensor::from_vector(v, {n}).to(dt).reshape(shape).to(g_gpu);
}

// Kept first: the job's first device group runs on a process set of rank 0 only. The device backend is built
// by a collective over every rank at that group, so the ranks outside the set must build it too, or rank 0
// waits in that collective for them while they go on negotiating.
TEST(RuntimeGpu, FirstDeviceGroupOnAProcessSetOfOneRank) {
  Runtime& rt = *g_rt;
  const int solo = rt.add_process_set({0});
  if (rt.rank() == 0) {
    AllreduceOptions o;
    o.process_set = solo;
    Tensor t = allreduce(rt, gpu_values(DType::F32, {6}, 3, 0), "gpu.solo_first", o);
    const auto got = host_values(t);
    for (int64_t i = 0; i < 6; ++i) ASSERT_EQ(got[i], value(3, 0, i)) << i;
  }
  Tensor all = allreduce(rt, gpu_values(DType::F32, {6}, 4, rt.rank()), "gpu.after_solo");
  const auto got = host_values(all);
  for (int64_t i = 0; i < 6; ++i) ASSERT_NEAR(got[i], expected(ReduceOp::Sum, DType::F32, 4, rt.size(), i), 1e-4) << i;
}

TEST(RuntimeGpu, AllreduceEveryOpAndDtype) {
  Runtime& rt = *g_rt;
  const int n = rt.size(), r = rt.rank();
  int seed = 0;
  for (DType dt : kDTypes)
    for (ReduceOp op : kOps) {
      ++seed;
      Tensor in = testing::rank_values(dt, 37, seed, r, op == ReduceOp::Product).to(g_gpu);
      AllreduceOptions o;
      o.op = op;
      Tensor out = allreduce(rt, in, "gpu.allreduce." + std::to_string(seed), o);
      ASSERT_EQ(out.device(), g_gpu);
      ASSERT_EQ(out.dtype(), dt);
      const auto got = host_values(out);
      for (size_t i = 0; i < got.size(); ++i) {
        const double want = expected(op, dt, seed, n, static_cast<int64_t>(i));
        ASSERT_NEAR(got[i], want, tolerance(dt) * std::max(1.0, std::abs(want)))
            << dtype_name(dt) << " " << reduce_op_name(op) << " at " << i;
      }
    }
}

TEST(RuntimeGpu, InPlaceAsyncWithScalesAndCompression) {
  Runtime& rt = *g_rt;
  const int n = rt.size(), r = rt.rank();
  for (Compression c : {Compression::None, Compression::F16, Compression::BF16}) {
    Tensor t = testing::rank_values(DType::F32, 300, 7, r).to(g_gpu);
    AllreduceOptions o;
    o.op = ReduceOp::Average;
    o.prescale = 0.5;
    o.postscale = 4.0;
    o.compression = c;
    rt.allreduce_async(t, std::string("gpu.inplace.") + compression_name(c), o).wait();
    const auto got = host_values(t);
    for (size_t i = 0; i < got.size(); ++i) {
      const double want = 0.5 * 4.0 * expected(ReduceOp::Average, DType::F32, 7, n, static_cast<int64_t>(i));
      ASSERT_NEAR(got[i], want, c == Compression::None ? 1e-5 : 0.05 * std::max(1.0, std::abs(want)))
          << compression_name(c) << " at " << i;
    }
  }
}

TEST(RuntimeGpu, AllgatherUnevenFirstDims) {
  Runtime& rt = *g_rt;
  const int n = rt.size(), r = rt.rank();
  for (DType dt : kDTypes) {
    const int seed = 40 + static_cast<int>(dt);
    Tensor out = allgather(rt, gpu_values(dt, {r + 1, 3}, seed, r), std::string("gpu.allgather.") + dtype_name(dt));
    ASSERT_EQ(out.device(), g_gpu);
    ASSERT_EQ(out.size(0), n * (n + 1) / 2);
    const auto got = host_values(out);
    size_t k = 0;
    for (int q = 0; q < n; ++q)
      for (int64_t i = 0; i < (q + 1) * 3; ++i, ++k)
        ASSERT_EQ(got[k], value(seed, q, i)) << dtype_name(dt) << " block of rank " << q << " at " << i;
  }
}

TEST(RuntimeGpu, BroadcastFromEveryRoot) {
  Runtime& rt = *g_rt;
  const int n = rt.size(), r = rt.rank();
  for (DType dt : kDTypes)
    for (int root = 0; root < n; ++root) {
      const int seed = 60 + root;
      Tensor t = gpu_values(dt, {5, 4}, seed, r);
      broadcast(rt, t, root, "gpu.broadcast." + std::string(dtype_name(dt)) + "." + std::to_string(root));
      const auto got = host_values(t);
      for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], value(seed, root, static_cast<int64_t>(i)));
    }
}

TEST(RuntimeGpu, AlltoallUnevenSplits) {
  Runtime& rt = *g_rt;
  const int n = rt.size(), r = rt.rank();
  const int64_t width = 2;
  // Rank s sends q + 1 + s rows to rank q.
  auto rows = [](int s, int q) { return static_cast<int64_t>(q + 1 + s); };
  for (DType dt : {DType::F32, DType::I64, DType::BF16}) {
    const int seed = 80 + static_cast<int>(dt);
    std::vector<int64_t> splits;
    int64_t total = 0;
    for (int q = 0; q < n; ++q) {
      splits.push_back(rows(r, q));
      total += rows(r, q);
    }
    std::vector<int64_t> received;
    Tensor out = alltoall(rt, gpu_values(dt, {total, width}, seed, r), splits,
                          std::string("gpu.alltoall.") + dtype_name(dt), &received);
    ASSERT_EQ(out.device(), g_gpu);
    const auto got = host_values(out);
    size_t k = 0;
    for (int s = 0; s < n; ++s) {
      ASSERT_EQ(received[s], rows(s, r));
      int64_t offset = 0;  // rows rank s sent to ranks before this one
      for (int q = 0; q < r; ++q) offset += rows(s, q);
      for (int64_t i = 0; i < rows(s, r) * width; ++i, ++k)
        ASSERT_EQ(got[k], value(seed, s, offset * width + i)) << dtype_name(dt) << " from rank " << s;
    }
  }
}

TEST(RuntimeGpu, ReducescatterUnevenRows) {
  Runtime& rt = *g_rt;
  const int n = rt.size(), r = rt.rank();
  const int64_t rows = 2 * n + 1, width = 3;
  for (DType dt : {DType::F32, DType::F64, DType::I32, DType::BF16})
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Average, ReduceOp::Max}) {
      const int seed = 100 + 10 * static_cast<int>(dt) + static_cast<int>(op);
      Tensor out = reducescatter(rt, gpu_values(dt, {rows, width}, seed, r),
                                 std::string("gpu.reducescatter.") + dtype_name(dt) + reduce_op_name(op), op);
      int64_t first = 0;
      for (int q = 0; q < r; ++q) first += rows / n + (q < rows % n ? 1 : 0);
      ASSERT_EQ(out.size(0), rows / n + (r < rows % n ? 1 : 0));
      ASSERT_EQ(out.device(), g_gpu);
      const auto got = host_values(out);
      for (size_t i = 0; i < got.size(); ++i) {
        const double want = expected(op, dt, seed, n, first * width + static_cast<int64_t>(i));
        ASSERT_NEAR(got[i], want, tolerance(dt) * std::max(1.0, std::abs(want)))
            << dtype_name(dt) << " " << reduce_op_name(op) << " at " << i;
      }
    }
}

// Fewer rows than ranks: the last rank gets none, yet it must take the same steps as the others (integer
// Average and a postscale add a finishing kernel), or on two NCCL streams the next collectives go to different
// communicators on different ranks and hang.
TEST(RuntimeGpu, ReducescatterWithRanksThatGetNoRows) {
  Runtime& rt = *g_rt;
  const int n = rt.size(), r = rt.rank();
  const int64_t rows = std::max(1, n - 1);
  for (int round = 0; round < 3; ++round) {
    const int seed = 150 + round;
    Tensor out = reducescatter(rt, gpu_values(DType::I32, {rows, 2}, seed, r),
                               "gpu.reducescatter.few." + std::to_string(round), ReduceOp::Average);
    ASSERT_EQ(out.size(0), r < rows ? 1 : 0);
    const auto got = host_values(out);
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_EQ(got[i], expected(ReduceOp::Average, DType::I32, seed, n, r * 2 + static_cast<int64_t>(i))) << i;
    Tensor after = allreduce(rt, gpu_values(DType::F32, {5}, seed, r), "gpu.after_few." + std::to_string(round));
    const auto sum = host_values(after);
    for (int64_t i = 0; i < 5; ++i) ASSERT_NEAR(sum[i], expected(ReduceOp::Sum, DType::F32, seed, n, i), 1e-4) << i;
  }
}

TEST(RuntimeGpu, FusedEqualsUnfused) {
  Runtime& rt = *g_rt;
  const int r = rt.rank();
  AllreduceOptions o;
  o.op = ReduceOp::Average;
  o.prescale = 0.25;
  o.postscale = 3.0;
  std::vector<Tensor> fused, alone;
  std::vector<std::string> names;
  for (int k = 0; k < 24; ++k) {
    const int64_t len = 1 + 97 * k;
    fused.push_back(gpu_values(DType::F32, {len}, 200 + k, r));
    alone.push_back(gpu_values(DType::F32, {len}, 200 + k, r));
    names.push_back("gpu.fused." + std::to_string(k));
  }
  const CollectiveStats before = rt.stats();
  grouped_allreduce(rt, fused, names, o);
  const CollectiveStats after = rt.stats();
  EXPECT_GT(after.fused_tensors, before.fused_tensors) << "the grouped tensors were not fused";
  for (int k = 0; k < 24; ++k) rt.allreduce_async(alone[k], "gpu.alone." + std::to_string(k), o).wait();
  for (int k = 0; k < 24; ++k)
    EXPECT_EQ(fused[k].to(Device::cpu()).to_vector<float>(), alone[k].to(Device::cpu()).to_vector<float>())
        << "tensor " << k;
}

// Slices of one flat buffer form one run reduced where it lies. Rank 0 passes such slices, the other ranks
// separate tensors with the same names and values (as a joined rank's zeros would be): the ranks' runs differ,
// so every rank must take the fusion buffer, or NCCL would pair different bytes or hang. Then all ranks pass
// slices, reversed: one run each, the same values.
TEST(RuntimeGpu, FlatBufferRunsAgreeAcrossRanks) {
  Runtime& rt = *g_rt;
  const int n = rt.size(), r = rt.rank();
  const int64_t lens[] = {700, 1, 1299, 1000};
  for (bool same_layout : {false, true}) {
    const int seed = same_layout ? 96 : 95;
    Tensor flat = gpu_values(DType::F32, {3000}, seed, r);
    std::vector<Tensor> parts;
    std::vector<std::string> names;
    int64_t off = 0;
    for (int k = 0; k < 4; ++k) {
      Tensor slice = flat.slice(0, off, off + lens[k]);
      parts.push_back(same_layout || r == 0 ? slice : slice.clone());
      names.push_back("gpu.layout." + std::to_string(k));
      off += lens[k];
    }
    std::reverse(parts.begin(), parts.end());
    std::reverse(names.begin(), names.end());
    grouped_allreduce(rt, parts, names);
    std::reverse(parts.begin(), parts.end());
    off = 0;
    for (int k = 0; k < 4; ++k) {
      const auto got = host_values(parts[k]);
      for (int64_t i = 0; i < lens[k]; ++i)
        ASSERT_NEAR(got[i], expected(ReduceOp::Sum, DType::F32, seed, n, off + i), 1e-3)
            << (same_layout ? "same" : "different") << " layouts, part " << k << " at " << i;
      off += lens[k];
    }
  }
}

// One prescaled tensor of a count the fusion buffer would pad, in place on rank 0 and out of place on the
// others: a layout difference no rank checks, so every rank must still make the same NCCL call (one reduction of
// 1000 elements), or they pair different counts and hang.
TEST(RuntimeGpu, OneTensorInPlaceOnOneRankOnly) {
  Runtime& rt = *g_rt;
  const int n = rt.size(), r = rt.rank();
  Tensor t = gpu_values(DType::F32, {1000}, 97, r);
  AllreduceOptions o;
  o.prescale = 0.5;
  Tensor out = r == 0 ? t : Tensor::empty({1000}, DType::F32, g_gpu);
  rt.allreduce_async(t, "gpu.one_layout", o, out).wait();
  const auto got = host_values(out);
  for (int64_t i = 0; i < 1000; ++i)
    ASSERT_NEAR(got[i], 0.5 * expected(ReduceOp::Sum, DType::F32, 97, n, i), 1e-3) << "at " << i;
}

TEST(RuntimeGpu, DeviceMismatchIsAnError) {
  Runtime& rt = *g_rt;
  Tensor gpu_t = Tensor::ones({8}, DType::F32, g_gpu);
  // An output on another device is refused at enqueue, on this rank.
  EXPECT_THROW(rt.allreduce_async(gpu_t, "gpu.bad_output", {}, Tensor::empty({8}, DType::F32)), Error);
  if (rt.size() < 2) return;
  // Rank 0 offers a CPU tensor, the others a GPU tensor under the same name: every rank gets the error.
  Tensor t = rt.rank() == 0 ? Tensor::ones({8}) : gpu_t;
  try {
    rt.allreduce_async(t, "gpu.mismatch").wait();
    ADD_FAILURE() << "a device mismatch was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("device cpu vs cuda"), std::string::npos) << e.what();
  }
  // The runtime keeps working afterwards.
  Tensor ok = allreduce(rt, gpu_t, "gpu.after_mismatch");
  EXPECT_EQ(host_values(ok)[0], rt.size());
}

// Device groups complete asynchronously: many are launched before any is waited for, and creating a process
// set (which splits the communicators) first lets every launched group finish. Results are checked after.
TEST(RuntimeGpu, ProcessSetCreatedWhileDeviceGroupsAreInFlight) {
  Runtime& rt = *g_rt;
  const int n = rt.size(), r = rt.rank();
  std::vector<Tensor> ts;
  std::vector<Handle> hs;
  for (int k = 0; k < 16; ++k) {
    ts.push_back(gpu_values(DType::F32, {1 + 4099 * k}, 300 + k, r));
    hs.push_back(rt.allreduce_async(ts.back(), "gpu.inflight." + std::to_string(k)));
  }
  std::vector<int> all(n);
  for (int i = 0; i < n; ++i) all[i] = i;
  const int ps = rt.add_process_set(all);
  wait_all(hs);
  for (int k = 0; k < 16; ++k) {
    const auto got = host_values(ts[k]);
    for (size_t i = 0; i < got.size(); i += 97)
      ASSERT_NEAR(got[i], expected(ReduceOp::Sum, DType::F32, 300 + k, n, static_cast<int64_t>(i)),
                  1e-4 * std::max(1.0, std::abs(got[i])))
          << "tensor " << k << " at " << i;
  }
  AllreduceOptions o;
  o.process_set = ps;
  Tensor t = allreduce(rt, Tensor::ones({1000}, DType::F32, g_gpu), "gpu.inflight.set", o);
  EXPECT_EQ(host_values(t)[999], n);
}

// wait_device() returns at the launch and orders the current stream after the collective: the same name is
// submitted again at once (its previous collective may still run), each time reducing the last result.
TEST(RuntimeGpu, WaitDeviceOrdersTheStreamAndFreesTheName) {
  Runtime& rt = *g_rt;
  const int n = rt.size();
  Tensor t = Tensor::ones({1 << 18}, DType::F32, g_gpu);
  double want = 1;
  for (int k = 0; k < 6; ++k) {
    Tensor out = rt.allreduce_async(t, "gpu.wait_device").wait_device();
    EXPECT_TRUE(out.same(t));
    want *= n;
  }
  const auto got = host_values(t);
  EXPECT_EQ(got.front(), want);
  EXPECT_EQ(got.back(), want);
}

// A fused group's tensors produced on two streams: the group waits for the latest ready event of each (the
// side stream's is held back 100 ms by a host callback), so both results are the reduced values.
void CUDART_CB hold_100ms(void*) { std::this_thread::sleep_for(std::chrono::milliseconds(100)); }

TEST(RuntimeGpu, ReadyEventsOfEveryProducingStreamAreWaited) {
  Runtime& rt = *g_rt;
  const int n = rt.size();
  auto side = CudaStream::create(g_gpu.index);
  Tensor a = Tensor::zeros({4096}, DType::F32, g_gpu);
  Tensor b = Tensor::full({4096}, 2.0, DType::F32, g_gpu);
  std::vector<Handle> hs;
  {
    CudaStreamGuard guard(*side);
    ASSERT_EQ(cudaLaunchHostFunc(side->get(), hold_100ms, nullptr), cudaSuccess);
    a.copy_(Tensor::full({4096}, 3.0, DType::F32, g_gpu));
    hs.push_back(rt.allreduce_async(a, "gpu.two_streams.a", {}));
  }
  hs.push_back(rt.allreduce_async(b, "gpu.two_streams.b", {}));
  wait_all(hs);
  EXPECT_EQ(host_values(a).back(), 3.0 * n);
  EXPECT_EQ(host_values(b).back(), 2.0 * n);
}

// A group's tensors share one ready event, recorded on the caller's stream after the last of them was made
// ready: values written there behind a 100 ms hold are the ones reduced. The caller's stream is a side stream,
// so only that event orders the collective after the writes; 3 MiB in all, so the group runs on the
// communication stream, and its prescale kernel there shows a missing wait on one rank too.
TEST(RuntimeGpu, GroupWaitsForEveryTensorItHolds) {
  Runtime& rt = *g_rt;
  const int n = rt.size();
  auto side = CudaStream::create(g_gpu.index);
  const int64_t len = 128 * 1024;
  std::vector<Tensor> ts;
  std::vector<std::string> names;
  std::vector<Handle> hs;
  {
    CudaStreamGuard guard(*side);
    for (int k = 0; k < 3; ++k) {
      ts.push_back(Tensor::zeros({len * (k + 1)}, DType::F32, g_gpu));
      names.push_back("gpu.group_ready." + std::to_string(k));
    }
    ASSERT_EQ(cudaLaunchHostFunc(side->get(), hold_100ms, nullptr), cudaSuccess);
    for (int k = 0; k < 3; ++k) ts[k].copy_(Tensor::full({len * (k + 1)}, k + 2.0, DType::F32, g_gpu));
    AllreduceOptions o;
    o.prescale = 0.5;
    hs = rt.grouped_allreduce_async(ts, names, o);
  }
  wait_all(hs);
  for (int k = 0; k < 3; ++k) {
    const auto got = host_values(ts[k]);
    EXPECT_EQ(got.front(), (k + 2.0) * 0.5 * n) << "tensor " << k;
    EXPECT_EQ(got.back(), (k + 2.0) * 0.5 * n) << "tensor " << k;
  }
}

// A small MLP on the GPU whose parameters come from a fixed seed: identical on every rank.
struct GpuMlp {
  std::vector<NamedParameter> params;
  explicit GpuMlp(const std::vector<int64_t>& widths) {
    Generator gen(3);
    for (size_t l = 0; l + 1 < widths.size(); ++l) {
      const double s = 1.0 / std::sqrt(static_cast<double>(widths[l]));
      params.push_back({"l" + std::to_string(l) + ".w",
                        Tensor::uniform({widths[l + 1], widths[l]}, -s, s, gen, DType::F32, g_gpu)
                            .set_requires_grad(true)});
      params.push_back({"l" + std::to_string(l) + ".b",
                        Tensor::uniform({widths[l + 1]}, -s, s, gen, DType::F32, g_gpu).set_requires_grad(true)});
    }
  }
  Tensor loss(const Tensor& x, const Tensor& y) const {
    Tensor h = x;
    for (size_t i = 0; i < params.size(); i += 2) {
      h = linear(h, params[i].tensor, params[i + 1].tensor);
      if (i + 2 < params.size()) h = relu(h);
    }
    return mean(square(sub(h, y)));
  }
};

TEST(RuntimeGpu, DistributedOptimizerNRanksEqualsOneGpuWithNTimesTheBatch) {
  Runtime& rt = *g_rt;
  const int n = rt.size(), r = rt.rank();
  const int64_t B = 8, in = 6, out = 3;
  GpuMlp ref({in, 32, 16, out}), dist({in, 32, 16, out});
  const SgdOptions so{.lr = 0.1, .momentum = 0.9};
  Sgd ref_opt(ref.params, so);
  Sgd inner(dist.params, so);
  DistributedOptimizer opt(inner, rt);
  broadcast_parameters(rt, dist.params);
  for (int step = 0; step < 4; ++step) {
    Generator gen(100 + step);
    Tensor x = Tensor::randn({n * B, in}, gen, DType::F32, g_gpu);
    Tensor y = Tensor::randn({n * B, out}, gen, DType::F32, g_gpu);
    ref_opt.zero_grad();
    ref.loss(x, y).backward();
    ref_opt.step();
    opt.zero_grad();
    dist.loss(x.slice(0, r * B, (r + 1) * B), y.slice(0, r * B, (r + 1) * B)).backward();
    opt.step();
  }
  for (size_t i = 0; i < ref.params.size(); ++i) {
    ASSERT_EQ(dist.params[i].tensor.device(), g_gpu);
    const auto a = host_values(dist.params[i].tensor), b = host_values(ref.params[i].tensor);
    double worst = 0;
    for (size_t k = 0; k < a.size(); ++k) worst = std::max(worst, std::abs(a[k] - b[k]));
    EXPECT_LE(worst, 2e-5) << ref.params[i].name << " on rank " << r;
  }
  EXPECT_GT(opt.stats().dense_allreduce_bytes, 0);
}

}  // namespace
}  // namespace kolo

int main(int argc, char** argv) {
  using namespace kolo;
  ::testing::InitGoogleTest(&argc, argv);
  Runtime rt;
  // One GPU per rank on each node, agreed by every rank (a CPU collective: a CPU-only job never touches CUDA).
  const int devices = device_available(DeviceType::CUDA) ? device_backend(DeviceType::CUDA).device_count() : 0;
  Tensor ok = Tensor::from_vector(std::vector<int32_t>{devices >= rt.local_size() ? 1 : 0}, {1});
  AllreduceOptions min;
  min.op = ReduceOp::Min;
  rt.allreduce_async(ok, "__gpu_check", min).wait();
  if (ok.to_vector<int32_t>()[0] == 0) {
    if (rt.rank() == 0)
      std::printf("SKIPPED: kolo_runtime_gpu_test needs one CUDA device per rank on each node (%d ranks per node, "
                  "%d devices visible here)\n", rt.local_size(), devices);
    rt.shutdown();
    return 0;
  }
  g_rt = &rt;
  g_gpu = Device::cuda(rt.local_rank() % devices);
  const int local_failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  Tensor flag = Tensor::from_vector(std::vector<int32_t>{local_failed}, {1});
  AllreduceOptions max;
  max.op = ReduceOp::Max;
  rt.allreduce_async(flag, "__test_verdict", max).wait();
  const int failed = flag.to_vector<int32_t>()[0];
  rt.shutdown();
  g_rt = nullptr;
  return failed;
}
