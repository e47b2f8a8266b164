// Multi-rank collectives tests (run under mpirun -np 2, 3, 4). Every expected value is computed on each
// rank from (seed, rank, index) alone, never by communicating. All ranks agree on pass/fail at the end.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>
#include <thread>

#include "benchmarks/allreduce/resnet50_sizes.h"
#include "tests/common/collective_values.h"
#include "tests/common/mpi_gtest.h"
#include "collectives/controller.h"
#include "collectives/mpi/shm_allreduce.h"
#include "collectives/ops.h"

namespace kolo {
namespace {

using testing::expected;
using testing::kDTypes;
using testing::kOps;
using testing::tolerance;
using testing::value;

Runtime* g_rt = nullptr;

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Tensor make(DType dt, int64_t n, int seed, int rank, bool product = false) {
  return testing::rank_values(dt, n, seed, rank, product);
}


TEST(Collectives, AllreduceEveryOpDtypeSize) {
  Runtime& rt = *g_rt;
  const int n = rt.size(), r = rt.rank();
  struct Case { DType dt; ReduceOp op; int64_t len; int seed; Tensor out; Handle h; };
  std::vector<Case> cases;
  int seed = 0;
  for (DType dt : kDTypes)
    for (ReduceOp op : kOps)
      for (int64_t len : {int64_t{0}, int64_t{1}, int64_t{17}, int64_t{100003}}) {
        Case c{dt, op, len, ++seed, {}, {}};
        Tensor in = make(dt, len, seed, r, op == ReduceOp::Product);
        AllreduceOptions o;
        o.op = op;
        const bool in_place = seed % 2 == 0;
        c.out = in_place ? in : Tensor::empty({len}, dt);
        c.h = rt.allreduce_async(in, "ar." + std::to_string(seed), o, in_place ? Tensor() : c.out);
        cases.push_back(std::move(c));
      }
  for (auto& c : cases) {
    c.h.wait();
    auto got = c.out.to_vector<double>();
    ASSERT_EQ(static_cast<int64_t>(got.size()), c.len);
    for (int64_t i = 0; i < c.len; ++i) {
      const double want = expected(c.op, c.dt, c.seed, n, i);
      ASSERT_NEAR(got[i], want, tolerance(c.dt) * std::max(1.0, std::abs(want)))
          << dtype_name(c.dt) << " " << reduce_op_name(c.op) << " len " << c.len << " index " << i;
    }
  }
}

// The shared-memory allreduce on its own (MPI's is the fallback, so a wrong segment path would otherwise hide
// behind it): a 4 KiB slot forces many pieces, counts leave ragged last pieces and slices, every dtype and
// reduce op, in place and out of place. Called from this thread on its own communicator.
TEST(Collectives, ShmAllreduceEveryDtypeOpAndPieceShape) {
  const int n = g_rt->size(), r = g_rt->rank();
  MPI_Comm comm;
  ASSERT_EQ(MPI_Comm_dup(MPI_COMM_WORLD, &comm), MPI_SUCCESS);
  auto shm = ShmAllreduce::create(reinterpret_cast<void*>(comm), 4096);
  ASSERT_TRUE(shm) << "all ranks of this test share one node";
  int seed = 300;
  for (DType dt : kDTypes)
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Min, ReduceOp::Max, ReduceOp::Product})
      for (int64_t len : {int64_t{1}, int64_t{33}, int64_t{2048 + 7}, int64_t{10007}}) {
        ++seed;
        Tensor in = make(dt, len, seed, r, op == ReduceOp::Product);
        const bool in_place = seed % 2 == 0;
        Tensor out = in_place ? in : Tensor::empty({len}, dt);
        shm->allreduce(in.data_ptr(), out.data_ptr(), len, dt, op);
        auto got = out.to_vector<double>();
        for (int64_t i = 0; i < len; ++i) {
          const double want = expected(op, dt, seed, n, i);
          ASSERT_NEAR(got[i], want, tolerance(dt) * std::max(1.0, std::abs(want)))
              << dtype_name(dt) << " " << reduce_op_name(op) << " len " << len << " index " << i;
        }
      }
  // Spans: a fused group copied straight from and to its tensors, with empty tensors between, one in place,
  // scales folded into the copies (every piece boundary falls inside some span).
  for (DType dt : {DType::F32, DType::F64, DType::BF16}) {
    ++seed;
    const std::vector<int64_t> lens = {5, 0, 3000, 1, 0, 2500};
    std::vector<Tensor> ins, outs;
    std::vector<HostSpan> spans;
    int64_t total = 0;
    for (size_t k = 0; k < lens.size(); ++k) {
      ins.push_back(make(dt, lens[k], seed + static_cast<int>(k), r));
      outs.push_back(k == 2 ? ins.back() : Tensor::empty({lens[k]}, dt));
      spans.push_back({ins.back().data_ptr(), outs.back().data_ptr(), lens[k]});
      total += lens[k];
    }
    shm->allreduce_spans(spans, dt, ReduceOp::Sum, 0.5, 4.0);
    for (size_t k = 0; k < lens.size(); ++k) {
      auto got = outs[k].to_vector<double>();
      for (int64_t i = 0; i < lens[k]; ++i) {
        const double want = 2.0 * expected(ReduceOp::Sum, dt, seed + static_cast<int>(k), n, i);
        ASSERT_NEAR(got[i], want, tolerance(dt) * std::max(1.0, std::abs(want))) << dtype_name(dt) << " span " << k;
      }
    }
    ASSERT_GT(total * static_cast<int64_t>(dtype_size(dt)), 4096);
  }
  shm.reset();
  MPI_Comm_free(&comm);
}

TEST(Collectives, PrescalePostscale) {
  Runtime& rt = *g_rt;
  AllreduceOptions o;
  o.prescale = 0.5;
  o.postscale = 3.0;
  Tensor out = allreduce(rt, make(DType::F64, 33, 5, rt.rank()), "scaled", o);
  auto v = out.to_vector<double>();
  for (int64_t i = 0; i < 33; ++i) EXPECT_DOUBLE_EQ(v[i], 1.5 * expected(ReduceOp::Sum, DType::F64, 5, rt.size(), i));
}

TEST(Collectives, EnqueueOrderDoesNotMatter) {
  Runtime& rt = *g_rt;
  std::vector<int> order(40);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937 rng(1234 + rt.rank());
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<Tensor> t(40);
  std::vector<Handle> h(40);
  for (int k : order) {
    t[k] = make(DType::F32, 10 + k, 100 + k, rt.rank());
    h[k] = rt.allreduce_async(t[k], "order." + std::to_string(k));
    if (k % 7 == 0) std::this_thread::sleep_for(std::chrono::microseconds(300 * rt.rank()));
  }
  for (int k = 0; k < 40; ++k) {
    h[k].wait();
    auto v = t[k].to_vector<double>();
    for (int64_t i = 0; i < 10 + k; ++i) ASSERT_EQ(v[i], expected(ReduceOp::Sum, DType::F32, 100 + k, rt.size(), i));
  }
}

TEST(Collectives, ResNet50FusionEqualsOneByOne) {
  Runtime& rt = *g_rt;
  const auto sizes = bench::resnet50_sizes();
  ASSERT_EQ(sizes.size(), 161u);
  ASSERT_EQ(std::accumulate(sizes.begin(), sizes.end(), int64_t{0}), 25557032);
  auto data = [&](size_t k) {  // multiples of 1/1024: every sum is exact whatever the reduction order
    std::vector<float> v(sizes[k]);
    for (int64_t i = 0; i < sizes[k]; ++i)
      v[i] = static_cast<float>((Generator::hash(k, rt.rank() * 100000000ull + i) % 2048)) / 1024.0f - 1.0f;
    return Tensor::from_vector(v, {sizes[k]});
  };
  std::vector<Tensor> fused, single;
  std::vector<std::string> names;
  for (size_t k = 0; k < sizes.size(); ++k) {
    fused.push_back(data(k));
    single.push_back(data(k));
    names.push_back("resnet.grad." + std::to_string(k));
  }
  const auto before = rt.stats();
  grouped_allreduce(rt, fused, names);
  const auto after = rt.stats();
  EXPECT_GT(after.largest_fusion, 1);
  EXPECT_LT(after.collectives - before.collectives, 161);
  for (size_t k = 0; k < sizes.size(); ++k) {
    rt.allreduce_async(single[k], "resnet.single." + std::to_string(k)).wait();
    ASSERT_EQ(fused[k].to_vector<float>(), single[k].to_vector<float>()) << "tensor " << k;
  }
}

// Slices of flat buffers (a DistributedOptimizer's gradient slots), listed in reverse, through the MPI path
// (as across nodes): each buffer is one run reduced where it lies, in chunks that cross slice boundaries,
// with no fusion-buffer copies; the gap after the slices is untouched.
TEST(Collectives, FlatBufferSlicesReducedWhereTheyLie) {
  Config cfg = Config::from_env();
  cfg.shm_allreduce = false;
  cfg.allreduce_chunk_bytes = 4096;
  cfg.timeline = "/tmp/kolo_coll_runs_np" + std::to_string(g_rt->size()) + ".json";
  const int64_t kLen = 4099;
  auto slice_len = [](int k) { return int64_t{1} + (k * 53) % 200; };
  int64_t covered = 0;
  for (int k = 0; k < 40; ++k) covered += slice_len(k);
  {
    Runtime rt(cfg);
    const int n = rt.size(), r = rt.rank();
    int seed = 60;
    for (DType dt : {DType::F32, DType::F64, DType::I32})
      for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Average, ReduceOp::Max}) {
        const bool floating = is_floating(dt);
        AllreduceOptions o;
        o.op = op;
        o.prescale = floating ? 0.5 : 1.0;
        o.postscale = floating ? 3.0 : 1.0;
        std::vector<Tensor> flats, slices;
        std::vector<std::string> names;
        for (int b = 0; b < 2; ++b) {
          flats.push_back(make(dt, kLen, seed + b, r));
          int64_t off = 0;
          for (int k = 0; k < 40; ++k) {
            slices.push_back(flats.back().slice(0, off, off + slice_len(k)));
            names.push_back("runs." + std::to_string(b) + "." + std::to_string(k));
            off += slice_len(k);
          }
        }
        std::reverse(slices.begin(), slices.end());
        std::reverse(names.begin(), names.end());
        wait_all(rt.grouped_allreduce_async(slices, names, o));
        for (int b = 0; b < 2; ++b) {
          const auto got = flats[b].to_vector<double>();
          for (int64_t i = 0; i < kLen; ++i) {
            const double want = i < covered ? expected(op, dt, seed + b, n, i) * o.prescale * o.postscale
                                            : value(seed + b, r, i);
            ASSERT_NEAR(got[i], want, tolerance(dt) * std::max(1.0, std::abs(want)))
                << dtype_name(dt) << " " << reduce_op_name(op) << ", buffer " << b << " at " << i;
          }
        }
        seed += 2;
      }
    rt.shutdown();
  }
  if (g_rt->rank() != 0) return;
  const std::string s = read_file(cfg.timeline);
  EXPECT_EQ(s.find("MEMCPY_IN_FUSION_BUFFER"), std::string::npos) << "slices went through the fusion buffer";
  // 40 slices per run; f32 runs of 15,120 bytes take 4 chunks of 4,096 bytes.
  EXPECT_NE(s.find("\"fused_tensors\":40,\"bytes\":15120,\"chunks\":4"), std::string::npos) << s.substr(0, 2000);
}

// Rank 0 passes slices of one flat buffer, the others separate tensors with the same names and values: the
// ranks' runs differ, so every rank must reduce tensor by tensor (pairing rank 0's run with the others'
// tensors would mix bytes or hang on mismatched counts).
TEST(Collectives, RanksWithDifferentLayoutsFallBackTogether) {
  Config cfg = Config::from_env();
  cfg.shm_allreduce = false;
  cfg.allreduce_chunk_bytes = 4096;
  Runtime rt(cfg);
  const int n = rt.size(), r = rt.rank();
  const int64_t kLen = 3000;
  const int64_t lens[] = {700, 1, 1299, 1000};
  Tensor flat = make(DType::F32, kLen, 90, r);
  std::vector<Tensor> parts;
  std::vector<std::string> names;
  int64_t off = 0;
  for (int k = 0; k < 4; ++k) {
    Tensor slice = flat.slice(0, off, off + lens[k]);
    parts.push_back(r == 0 ? slice : slice.clone());
    names.push_back("layout." + std::to_string(k));
    off += lens[k];
  }
  std::reverse(parts.begin(), parts.end());
  std::reverse(names.begin(), names.end());
  wait_all(rt.grouped_allreduce_async(parts, names));
  std::reverse(parts.begin(), parts.end());
  off = 0;
  for (int k = 0; k < 4; ++k) {
    const auto got = parts[k].to_vector<double>();
    for (int64_t i = 0; i < lens[k]; ++i)
      ASSERT_NEAR(got[i], expected(ReduceOp::Sum, DType::F32, 90, n, off + i), 1e-3) << "part " << k << " at " << i;
    off += lens[k];
  }
  rt.shutdown();
}

TEST(Collectives, AllgatherVariableFirstDim) {
  Runtime& rt = *g_rt;
  const int n = rt.size();
  int seed = 50;
  for (DType dt : kDTypes) {
    ++seed;
    const int64_t rows = rt.rank() == 0 ? 0 : rt.rank() + 1;
    Tensor in = make(dt, rows * 3, seed, rt.rank()).view({rows, 3});
    Tensor out = allgather(rt, in, std::string("ag.") + dtype_name(dt));
    int64_t total = 0;
    for (int q = 0; q < n; ++q) total += q == 0 ? 0 : q + 1;
    ASSERT_EQ(out.shape(), (Shape{total, 3}));
    auto v = out.to_vector<double>();
    int64_t at = 0;
    for (int q = 0; q < n; ++q)
      for (int64_t i = 0; i < (q == 0 ? 0 : q + 1) * 3; ++i) ASSERT_EQ(v[at++], value(seed, q, i)) << dtype_name(dt);
  }
}

TEST(Collectives, BroadcastEveryRoot) {
  Runtime& rt = *g_rt;
  for (int root = 0; root < rt.size(); ++root)
    for (DType dt : kDTypes) {
      Tensor t = make(dt, 1001, 70 + root, rt.rank());
      broadcast(rt, t, root, "bc." + std::to_string(root) + dtype_name(dt));
      auto v = t.to_vector<double>();
      for (int64_t i = 0; i < 1001; ++i) ASSERT_EQ(v[i], value(70 + root, root, i));
    }
}

TEST(Collectives, AlltoallWithSplits) {
  Runtime& rt = *g_rt;
  const int n = rt.size(), r = rt.rank();
  // rank r sends (r + j) % 3 rows of 2 to rank j; row values encode (sender, receiver, row, col)
  std::vector<int64_t> splits(n);
  std::vector<double> v;
  for (int j = 0; j < n; ++j) {
    splits[j] = (r + j) % 3;
    for (int64_t row = 0; row < splits[j]; ++row)
      for (int c = 0; c < 2; ++c) v.push_back(r * 1000 + j * 100 + row * 10 + c);
  }
  const int64_t rows = static_cast<int64_t>(v.size() / 2);
  Tensor in = Tensor::from_vector(v, {rows, 2}).to(DType::I64);
  std::vector<int64_t> got_splits;
  Tensor out = alltoall(rt, in, splits, "a2a", &got_splits);
  auto o = out.to_vector<double>();
  size_t at = 0;
  for (int s = 0; s < n; ++s) {
    ASSERT_EQ(got_splits[s], (s + r) % 3);
    for (int64_t row = 0; row < (s + r) % 3; ++row)
      for (int c = 0; c < 2; ++c) ASSERT_EQ(o[at++], s * 1000 + r * 100 + row * 10 + c);
  }
  ASSERT_EQ(at, o.size());
}

TEST(Collectives, ReducescatterUneven) {
  Runtime& rt = *g_rt;
  const int n = rt.size(), r = rt.rank();
  for (DType dt : kDTypes) {
    const int64_t rows = 2 * n + 1;
    Tensor in = make(dt, rows * 4, 90, r).view({rows, 4});
    Tensor out = reducescatter(rt, in, std::string("rs.") + dtype_name(dt));
    int64_t first = 0;
    for (int q = 0; q < r; ++q) first += rows / n + (q < rows % n ? 1 : 0);
    const int64_t mine = rows / n + (r < rows % n ? 1 : 0);
    ASSERT_EQ(out.shape(), (Shape{mine, 4}));
    auto v = out.to_vector<double>();
    for (int64_t i = 0; i < mine * 4; ++i) ASSERT_EQ(v[i], expected(ReduceOp::Sum, dt, 90, n, first * 4 + i));
  }
}

TEST(Collectives, BarrierCompletes) {
  barrier(*g_rt);
  barrier(*g_rt);
}

// Host tensors are never launched on a device: wait_device() is output(), with the collective's errors.
TEST(Collectives, WaitDeviceOnHostTensorsWaitsOnTheHost) {
  Runtime& rt = *g_rt;
  Tensor t = Tensor::ones({1000});
  Tensor out = rt.allreduce_async(t, "host.wait_device").wait_device();
  EXPECT_TRUE(out.same(t));
  EXPECT_EQ(t.to_vector<float>()[999], rt.size());
  if (rt.size() < 2) return;
  Tensor bad = Tensor::ones({rt.rank() == 0 ? 3 : 4});
  EXPECT_THROW(rt.allreduce_async(bad, "host.wait_device.mismatch").wait_device(), Error);
}

// Every rank must see the identical message: compare lengths and a checksum through an allgather.
void expect_same_everywhere(Runtime& rt, const std::string& msg, const std::string& tag) {
  uint64_t sum = 0;  // unsigned: the hash wraps around by design
  for (unsigned char c : msg) sum = sum * 31 + c;
  Tensor mine = Tensor::from_vector(std::vector<int64_t>{static_cast<int64_t>(msg.size()), static_cast<int64_t>(sum)}, {1, 2});
  auto all = allgather(rt, mine, "same." + tag).to_vector<int64_t>();
  for (int q = 1; q < rt.size(); ++q) {
    EXPECT_EQ(all[2 * q], all[0]);
    EXPECT_EQ(all[2 * q + 1], all[1]);
  }
}

TEST(Collectives, ShapeMismatchSameErrorEverywhere) {
  Runtime& rt = *g_rt;
  const int64_t len = rt.rank() == rt.size() - 1 ? 5 : 4;
  std::string msg;
  try {
    allreduce(rt, Tensor::ones({len}), "mismatched.shape");
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("mismatched.shape"), std::string::npos) << msg;
  EXPECT_NE(msg.find("rank " + std::to_string(rt.size() - 1)), std::string::npos) << msg;
  expect_same_everywhere(rt, msg, "shape");
}

TEST(Collectives, DtypeMismatchSameErrorEverywhere) {
  Runtime& rt = *g_rt;
  std::string msg;
  try {
    allreduce(rt, Tensor::ones({3}, rt.rank() == 0 ? DType::F64 : DType::F32), "mismatched.dtype");
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("mismatched.dtype"), std::string::npos) << msg;
  EXPECT_NE(msg.find("dtype"), std::string::npos) << msg;
  expect_same_everywhere(rt, msg, "dtype");
}

// A collective can only complete once every rank submitted it, so one rank ("late") holds its
// submission back behind a second collective until the others have tried the duplicate: the
// first "dup" is then provably still in flight when they do. Two rounds so every rank checks.
TEST(Collectives, DuplicateInFlightNameRejected) {
  Runtime& rt = *g_rt;
  if (rt.size() < 2) GTEST_SKIP() << "needs a second rank to hold the first op in flight";
  for (int late = 0; late < 2; ++late) {
    const std::string name = "dup." + std::to_string(late), gate = "dup.gate." + std::to_string(late);
    Tensor a = Tensor::ones({4}), b = Tensor::ones({4}), g = Tensor::ones({1});
    if (rt.rank() == late) {
      allreduce(rt, g, gate);
      rt.allreduce_async(a, name).wait();
    } else {
      Handle h = rt.allreduce_async(a, name);
      EXPECT_THROW(rt.allreduce_async(b, name), Error);
      allreduce(rt, g, gate);
      h.wait();
      EXPECT_EQ(b.to_vector<float>()[0], 1.0f) << "a rejected submission must leave its tensor intact";
    }
    EXPECT_EQ(a.to_vector<float>()[0], static_cast<float>(rt.size()));
  }
}

// A group naming one tensor twice is rejected whole on every rank: no name of it stays claimed, so the
// corrected group then runs, and no tensor was touched.
TEST(Collectives, GroupRepeatingANameRejectedWhole) {
  Runtime& rt = *g_rt;
  std::vector<Tensor> ts = {Tensor::ones({4}), Tensor::ones({4}), Tensor::ones({4})};
  try {
    rt.grouped_allreduce_async(ts, {"grp.a", "grp.b", "grp.a"});
    ADD_FAILURE() << "a repeated name in one group must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'grp.a'"), std::string::npos) << e.what();
  }
  for (const Tensor& t : ts) EXPECT_EQ(t.to_vector<float>()[0], 1.0f) << "a rejected group must leave its tensors intact";
  grouped_allreduce(rt, ts, {"grp.a", "grp.b", "grp.c"});
  for (const Tensor& t : ts) EXPECT_EQ(t.to_vector<float>()[0], static_cast<float>(rt.size()));
}

TEST(Collectives, ProcessSetEvenRanks) {
  Runtime& rt = *g_rt;
  std::vector<int> even;
  for (int q = 0; q < rt.size(); q += 2) even.push_back(q);
  const int ps = rt.add_process_set(even);
  if (rt.rank() % 2 == 0) {
    Tensor t = make(DType::F32, 64, 7, rt.rank());
    rt.allreduce_async(t, "ps.sum", {ReduceOp::Sum, 1, 1, std::nullopt, ps}).wait();
    auto v = t.to_vector<double>();
    for (int64_t i = 0; i < 64; ++i) {
      double want = 0;
      for (int q : even) want += value(7, q, i);
      ASSERT_EQ(v[i], want);
    }
    Tensor b = make(DType::I32, 9, 8, rt.rank());
    broadcast(rt, b, static_cast<int>(even.size()) - 1, "ps.bc", ps);
    auto bv = b.to_vector<double>();
    for (int64_t i = 0; i < 9; ++i) ASSERT_EQ(bv[i], value(8, even.back(), i));
  } else {
    EXPECT_THROW(rt.allreduce_async(Tensor::ones({2}), "ps.outsider", {ReduceOp::Sum, 1, 1, std::nullopt, ps}), Error);
  }
  barrier(rt);
}

// Two disjoint process sets (even and odd ranks), each reducing its own tensor under the same name, as
// per-stage data-parallel groups do: each set gets its own sum every time. The coordinator keyed pending
// tensors by name alone, so the two sets' "w" met in one entry (a false mismatch), and a rank could complete
// its own "w" with another set's response without reducing it.
TEST(Collectives, SameNameOnDisjointProcessSets) {
  Runtime& rt = *g_rt;
  if (rt.size() < 2) GTEST_SKIP() << "needs two ranks";
  std::vector<int> even, odd;
  for (int q = 0; q < rt.size(); ++q) (q % 2 == 0 ? even : odd).push_back(q);
  const int ps_even = rt.add_process_set(even), ps_odd = rt.add_process_set(odd);
  const bool mine_even = rt.rank() % 2 == 0;
  const std::vector<int>& members = mine_even ? even : odd;
  for (int step = 0; step < 100; ++step) {
    // The odd set runs a little behind now and then, so the two sets' requests meet in some cycles and not others.
    if (!mine_even && step % 3 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200 * (step % 5)));
    Tensor t = make(DType::F32, 8, step, rt.rank());
    rt.allreduce_async(t, "w", {ReduceOp::Sum, 1, 1, std::nullopt, mine_even ? ps_even : ps_odd}).wait();
    auto v = t.to_vector<double>();
    for (int64_t i = 0; i < 8; ++i) {
      double want = 0;
      for (int q : members) want += value(step, q, i);
      ASSERT_EQ(v[i], want) << "step " << step << " index " << i;
    }
  }
  barrier(rt);
}

// A callback runs on the background thread, which completes every collective: waiting there would wait for
// itself forever (no timeout saw it, since nothing is busy). The wait is refused with an error instead; the
// collective the callback enqueued still completes and can be waited for elsewhere.
TEST(Collectives, WaitInsideACallbackIsRefused) {
  Runtime& rt = *g_rt;
  Tensor a = Tensor::ones({4}), b = Tensor::ones({4});
  Handle hb;
  std::string msg;
  Handle ha = rt.allreduce_async(a, "callback.a", {}, {}, [&](const std::string&) {
    hb = rt.allreduce_async(b, "callback.b");
    try {
      hb.wait();
    } catch (const Error& e) {
      msg = e.what();
    }
  });
  ha.wait();
  EXPECT_NE(msg.find("Handle::wait() inside a collective's callback would deadlock"), std::string::npos) << msg;
  hb.wait();
  EXPECT_EQ(b.to_vector<float>()[0], static_cast<float>(rt.size()));
}

TEST(Collectives, JoinServesRemainingRanks) {
  Runtime& rt = *g_rt;
  const int last = rt.size() - 1;
  int last_joined = -1;
  if (rt.rank() == last) {
    last_joined = join(rt);  // joins first; serves the others' allreduce with zeros
  } else {
    Tensor t = make(DType::F32, 20, 9, rt.rank());
    rt.allreduce_async(t, "join.extra").wait();
    auto v = t.to_vector<double>();
    for (int64_t i = 0; i < 20; ++i) {
      double want = 0;
      for (int q = 0; q < last; ++q) want += value(9, q, i);
      ASSERT_EQ(v[i], want);
    }
    last_joined = join(rt);
  }
  // Every rank learns the same last joiner, and it is not the rank that joined first.
  Tensor mine = Tensor::from_vector(std::vector<int64_t>{last_joined}, {1});
  auto all = allgather(rt, mine, "join.verdict").to_vector<int64_t>();
  for (int64_t v : all) EXPECT_EQ(v, all[0]);
  EXPECT_TRUE(rt.size() == 1 || (all[0] >= 0 && all[0] < last)) << all[0];
}

TEST(Collectives, WireCompression) {
  Runtime& rt = *g_rt;
  for (Compression c : {Compression::F16, Compression::BF16}) {
    AllreduceOptions o;
    o.compression = c;
    o.op = ReduceOp::Average;
    std::vector<Tensor> ts;
    std::vector<Handle> hs;
    for (int k = 0; k < 3; ++k) {
      ts.push_back(make(DType::F32, 1000 + k, 30 + k, rt.rank()));
      hs.push_back(rt.allreduce_async(ts.back(), std::string("comp.") + compression_name(c) + std::to_string(k), o));
    }
    for (int k = 0; k < 3; ++k) {
      hs[k].wait();
      auto v = ts[k].to_vector<double>();
      for (int64_t i = 0; i < 1000 + k; ++i)
        ASSERT_NEAR(v[i], expected(ReduceOp::Average, DType::F32, 30 + k, rt.size(), i), 0.02);
    }
  }
}

TEST(Collectives, ResponseCacheHitsAndEviction) {
  Config cfg = Config::from_env();
  cfg.cache_capacity = 3;
  Runtime rt(cfg);
  for (int step = 0; step < 4; ++step)
    for (int k = 0; k < 5; ++k) {
      Tensor t = make(DType::F32, 10, k, rt.rank());
      rt.allreduce_async(t, "cache." + std::to_string(k)).wait();
      auto v = t.to_vector<double>();
      for (int64_t i = 0; i < 10; ++i) ASSERT_EQ(v[i], expected(ReduceOp::Sum, DType::F32, k, rt.size(), i));
    }
  std::vector<Tensor> ts;
  std::vector<std::string> names;
  for (int step = 0; step < 3; ++step) {
    ts = {make(DType::F32, 10, 1, rt.rank()), make(DType::F32, 10, 2, rt.rank())};
    grouped_allreduce(rt, ts, {"steady.a", "steady.b"});
  }
  EXPECT_GT(rt.stats().cache_hits, 0);
  rt.shutdown();
}

// Allgather, alltoall and reducescatter repeat through the response cache too. "ag.var" has a different
// first dimension on every rank: ranks whose shape differs from rank 0's (the agreed one) send it in full
// beside rank 0's cache bit, and the results stay exact either way, also when a shape changes mid-run.
TEST(Collectives, ResponseCacheServesEveryCachedOp) {
  Runtime rt(Config::from_env());
  const int n = rt.size(), r = rt.rank();
  constexpr int kSteps = 4;
  for (int step = 0; step < kSteps; ++step) {
    const int seed = 200 + step;
    Tensor eq = make(DType::F32, 2 * 3, seed, r).view({2, 3});
    auto ag = allgather(rt, eq, "cached.ag.eq").to_vector<double>();
    ASSERT_EQ(ag.size(), static_cast<size_t>(n * 6));
    for (int q = 0; q < n; ++q)
      for (int64_t i = 0; i < 6; ++i) ASSERT_EQ(ag[q * 6 + i], value(seed, q, i)) << "step " << step;

    const int64_t extra = step == 2 ? 1 : 0;  // one step changes every rank's row count
    auto rows_of = [&](int q) { return q + 1 + extra; };
    Tensor var = make(DType::I32, rows_of(r) * 2, seed, r).view({rows_of(r), 2});
    auto av = allgather(rt, var, "cached.ag.var").to_vector<double>();
    size_t at = 0;
    for (int q = 0; q < n; ++q)
      for (int64_t i = 0; i < rows_of(q) * 2; ++i) ASSERT_EQ(av[at++], value(seed, q, i)) << "step " << step;
    ASSERT_EQ(at, av.size());

    std::vector<double> v;
    for (int j = 0; j < n; ++j) v.push_back(step * 10000 + r * 100 + j);
    std::vector<int64_t> got;
    auto a2a = alltoall(rt, Tensor::from_vector(v, {n}).to(DType::I64), {}, "cached.a2a", &got).to_vector<double>();
    for (int q = 0; q < n; ++q) ASSERT_EQ(a2a[q], step * 10000 + q * 100 + r) << "step " << step;

    const int64_t rows = 2 * n;
    Tensor rs_in = make(DType::F64, rows * 2, seed, r).view({rows, 2});
    auto rs = reducescatter(rt, rs_in, "cached.rs").to_vector<double>();
    ASSERT_EQ(rs.size(), 4u);
    for (int64_t i = 0; i < 4; ++i) ASSERT_EQ(rs[i], expected(ReduceOp::Sum, DType::F64, seed, n, r * 4 + i));
  }
  // Every step after the first finds "ag.eq", "a2a" and "rs" in the cache on every rank.
  EXPECT_GE(rt.stats().cache_hits, 3 * (kSteps - 1));
  rt.shutdown();
}

// 1500 new tensors with long names in one cycle: the first RequestList and ResponseList are several times a
// shared-memory mailbox (64 KiB), so they travel in fragments; the second step hits the cache.
TEST(Collectives, ControlMessagesLargerThanAMailbox) {
  Runtime& rt = *g_rt;
  const int n = rt.size();
  std::vector<Tensor> ts;
  std::vector<std::string> names;
  for (int step = 0; step < 2; ++step) {
    ts.clear();
    names.clear();
    for (int k = 0; k < 1500; ++k) {
      ts.push_back(make(DType::F32, 3, 400 + k, rt.rank()));
      names.push_back("control.fragmented.with.a.long.name.to.make.the.request.lists.large." + std::to_string(k));
    }
    grouped_allreduce(rt, ts, names);
    for (int k = 0; k < 1500; ++k) {
      auto v = ts[k].to_vector<double>();
      for (int64_t i = 0; i < 3; ++i) ASSERT_EQ(v[i], expected(ReduceOp::Sum, DType::F32, 400 + k, n, i)) << k;
    }
  }
}

TEST(Collectives, HierarchicalAllreduceFakeNodes) {
  Config cfg = Config::from_env();
  cfg.hierarchical_allreduce = true;
  cfg.fake_local_size = g_rt->size() % 2 == 0 ? 2 : g_rt->size();
  cfg.allreduce_chunk_bytes = 4096;
  Runtime rt(cfg);
  EXPECT_EQ(rt.local_size(), cfg.fake_local_size);
  EXPECT_EQ(rt.cross_size(), rt.size() / cfg.fake_local_size);
  for (int64_t len : {1, 7, 5000}) {
    Tensor t = make(DType::F32, len, 11, rt.rank());
    Tensor out = allreduce(rt, t, "hier2." + std::to_string(len));
    auto v = out.to_vector<double>();
    for (int64_t i = 0; i < len; ++i) ASSERT_EQ(v[i], expected(ReduceOp::Sum, DType::F32, 11, rt.size(), i));
  }
  rt.shutdown();
}

// A knob that shapes the collectives (here the chunk size, which sets how many backend calls a region takes)
// set differently on one rank: every rank's Runtime refuses to start, with one message naming the knob.
TEST(Collectives, KnobsThatDifferBetweenRanksAreRefused) {
  if (g_rt->size() < 2) GTEST_SKIP() << "needs two ranks";
  for (const char* knob : {"KOLO_ALLREDUCE_CHUNK_BYTES", "KOLO_CACHE_CAPACITY"}) {
    Config cfg = Config::from_env();
    const bool last = g_rt->rank() == g_rt->size() - 1;
    if (std::string(knob) == "KOLO_ALLREDUCE_CHUNK_BYTES" && last) cfg.allreduce_chunk_bytes = 4096;
    if (std::string(knob) == "KOLO_CACHE_CAPACITY" && last) cfg.cache_capacity = 7;
    std::string msg;
    try {
      Runtime rt(cfg);
      rt.shutdown();
    } catch (const Error& e) {
      msg = e.what();
    }
    EXPECT_NE(msg.find(std::string(knob) + " differs between ranks"), std::string::npos) << msg;
    // Errors thrown on a rank start with "[rank R] " (the context); the rest must be the same everywhere.
    const size_t text = msg.find("kolo:");
    ASSERT_NE(text, std::string::npos) << msg;
    expect_same_everywhere(*g_rt, msg.substr(text), knob);
  }
}

// Fake nodes of two ranks: at an odd number of ranks the last node holds one, so hierarchical allreduce must be
// off on every rank (its ranks would otherwise have different node-local parts and cross-node partners: wrong
// sums or a hang); at an even number it runs. Either way the sums are exact.
TEST(Collectives, HierarchicalAllreduceOnUnevenFakeNodes) {
  Config cfg = Config::from_env();
  cfg.hierarchical_allreduce = true;
  cfg.fake_local_size = 2;
  cfg.allreduce_chunk_bytes = 4096;
  Runtime rt(cfg);
  const int n = rt.size();
  EXPECT_EQ(rt.local_size(), rt.rank() < n / 2 * 2 ? std::min(2, n) : 1);
  for (int64_t len : {1, 7, 5000}) {
    Tensor t = make(DType::F32, len, 12, rt.rank());
    Tensor out = allreduce(rt, t, "hier.uneven." + std::to_string(len), {ReduceOp::Average});
    auto v = out.to_vector<double>();
    for (int64_t i = 0; i < len; ++i)
      ASSERT_NEAR(v[i], expected(ReduceOp::Average, DType::F32, 12, n, i), 1e-5) << "len " << len << " at " << i;
  }
  rt.shutdown();
}

// Minimal JSON syntax check (objects, arrays, strings, numbers, literals).
bool json_value(const std::string& s, size_t& p);
void ws(const std::string& s, size_t& p) { while (p < s.size() && std::isspace(static_cast<unsigned char>(s[p]))) ++p; }
bool json_string(const std::string& s, size_t& p) {
  if (s[p] != '"') return false;
  for (++p; p < s.size(); ++p) {
    if (s[p] == '\\') ++p;
    else if (s[p] == '"') { ++p; return true; }
  }
  return false;
}
bool json_value(const std::string& s, size_t& p) {
  ws(s, p);
  if (p >= s.size()) return false;
  if (s[p] == '{' || s[p] == '[') {
    const char close = s[p] == '{' ? '}' : ']';
    const bool obj = s[p] == '{';
    ++p;
    ws(s, p);
    if (s[p] == close) { ++p; return true; }
    for (;;) {
      if (obj) {
        ws(s, p);
        if (!json_string(s, p)) return false;
        ws(s, p);
        if (s[p++] != ':') return false;
      }
      if (!json_value(s, p)) return false;
      ws(s, p);
      if (s[p] == ',') { ++p; continue; }
      if (s[p] == close) { ++p; return true; }
      return false;
    }
  }
  if (s[p] == '"') return json_string(s, p);
  const size_t start = p;
  while (p < s.size() && (std::isalnum(static_cast<unsigned char>(s[p])) || s[p] == '-' || s[p] == '.' || s[p] == '+')) ++p;
  return p > start;
}

TEST(Collectives, TimelineIsValidChromeTrace) {
  Config cfg = Config::from_env();
  cfg.timeline = "/tmp/kolo_coll_timeline_np" + std::to_string(g_rt->size()) + ".json";
  {
    Runtime rt(cfg);
    grouped_allreduce(rt, {make(DType::F32, 100, 1, rt.rank()), make(DType::F32, 50, 2, rt.rank())}, {"tl.a", "tl.b"});
    broadcast(rt, make(DType::F32, 10, 3, rt.rank()), 0, "tl.bc");
    rt.shutdown();
  }
  if (g_rt->rank() != 0) return;
  const std::string s = read_file(cfg.timeline);
  size_t p = 0;
  ASSERT_TRUE(json_value(s, p)) << s.substr(0, 400);
  ws(s, p);
  EXPECT_EQ(p, s.size());
  for (const char* ev : {"NEGOTIATE", "QUEUE", "WAIT_FOR_DATA", "MEMCPY_IN_FUSION_BUFFER", "ALLREDUCE",
                         "MEMCPY_OUT_FUSION_BUFFER", "BROADCAST", "\"fused_tensors\":2", "tl.a", "tl.b"})
    EXPECT_NE(s.find(ev), std::string::npos) << ev;
}

TEST(Collectives, StallInspectorNamesMissingRanks) {
  Config cfg = Config::from_env();
  cfg.stall_check_time_s = 0.2;
  Runtime rt(cfg);
  // Far beyond the 0.2 s check, even on a loaded machine.
  if (rt.rank() != 0) std::this_thread::sleep_for(std::chrono::milliseconds(3000));
  Tensor t = Tensor::ones({4});
  rt.allreduce_async(t, "stalled.tensor").wait();
  if (rt.rank() == 0) {
    const std::string rep = rt.last_stall_report();
    EXPECT_NE(rep.find("stalled.tensor"), std::string::npos) << rep;
    EXPECT_NE(rep.find("missing ranks [1"), std::string::npos) << rep;
  }
  rt.shutdown();
}

TEST(Collectives, AutotuneKeepsResultsCorrect) {
  Config cfg = Config::from_env();
  cfg.autotune = true;
  cfg.autotune_window_cycles = 1;
  Runtime rt(cfg);
  for (int step = 0; step < 30; ++step) {
    Tensor t = make(DType::F32, 1000, step, rt.rank());
    rt.allreduce_async(t, "tune." + std::to_string(step % 4)).wait();
    auto v = t.to_vector<double>();
    for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(v[i], expected(ReduceOp::Sum, DType::F32, step, rt.size(), i));
  }
  rt.shutdown();
}

}  // namespace
}  // namespace kolo

int main(int argc, char** argv) { return kolo::testing::run_all_tests_on_every_rank(argc, argv, kolo::g_rt); }
