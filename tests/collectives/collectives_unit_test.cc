// Single-process collectives tests: message encoding, response cache, fusion plan, backend fallback order,
// reduction kernels, config parsing, and the whole runtime on the loopback backend (size 1, no mpirun).
#include <gtest/gtest.h>

#include <cstdlib>

#include "collectives/backend_factory.h"
#include "collectives/controller.h"
#include "collectives/device_collectives.h"
#include "collectives/memory_runs.h"
#include "collectives/ops.h"
#include "collectives/reduce_kernels.h"
#include "collectives/response_cache.h"

namespace kolo {
namespace {

Request req(const std::string& name, Shape shape, DType dt = DType::F32) {
  Request r;
  r.name = name;
  r.shape = std::move(shape);
  r.dtype = dt;
  return r;
}

TEST(CollectivesUnit, MessagesRoundTrip) {
  RequestList l;
  l.requests = {req("a", {2, 3}), req("b", {7}, DType::BF16)};
  l.requests[1].op = OpType::Broadcast;
  l.requests[1].root = 2;
  l.requests[1].prescale = 0.25;
  l.cached_bits = {5, 1ull << 63};
  l.shutdown = true;
  l.failure = "kolo: rank 1 failed";
  RequestList back = deserialize_request_list(serialize(l));
  ASSERT_EQ(back.requests.size(), 2u);
  EXPECT_EQ(back.requests[1].name, "b");
  EXPECT_EQ(back.requests[1].root, 2);
  EXPECT_EQ(back.requests[1].prescale, 0.25);
  EXPECT_EQ(back.requests[0].shape, (Shape{2, 3}));
  EXPECT_EQ(back.cached_bits, l.cached_bits);
  EXPECT_TRUE(back.shutdown);
  EXPECT_FALSE(back.joined);
  EXPECT_EQ(back.failure, l.failure);

  ResponseList rl;
  rl.responses.push_back({OpType::Allreduce, {"x", "y"}, {req("x", {1}), req("y", {2})}, "boom", 3});
  rl.abort = "lost";
  rl.fusion_threshold = 99;
  rl.cycle_time_ms = 2.5;
  ResponseList rb = deserialize_response_list(serialize(rl));
  ASSERT_EQ(rb.responses.size(), 1u);
  EXPECT_EQ(rb.responses[0].names, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(rb.responses[0].error, "boom");
  EXPECT_EQ(rb.responses[0].process_set, 3);
  EXPECT_EQ(rb.abort, "lost");
  EXPECT_EQ(rb.fusion_threshold, 99);
  EXPECT_THROW(deserialize_response_list({1, 2}), Error);
}

TEST(CollectivesUnit, MismatchDescribesDifference) {
  Request a = req("t", {2, 3}), b = req("t", {3, 3});
  EXPECT_NE(a.mismatch(b).find("shape"), std::string::npos);
  a.op = b.op = OpType::Allgather;
  EXPECT_EQ(a.mismatch(b), "");  // first dim may differ
  b.dtype = DType::F64;
  EXPECT_NE(a.mismatch(b).find("dtype"), std::string::npos);
}

TEST(CollectivesUnit, ResponseCacheLruKeepsSlotsStable) {
  ResponseCache c(2);
  c.put(req("a", {1}));
  c.put(req("b", {1}));
  const auto sa = c.lookup(req("a", {1}));
  ASSERT_TRUE(sa);
  EXPECT_FALSE(c.lookup(req("a", {2})));  // different shape: miss
  c.touch(*sa);                           // b is now least recently used
  c.put(req("c", {1}));
  EXPECT_FALSE(c.lookup(req("b", {1})));
  EXPECT_EQ(*c.lookup(req("a", {1})), *sa);
  EXPECT_TRUE(c.lookup(req("c", {1})));
  c.erase("a");
  EXPECT_FALSE(c.lookup(req("a", {1})));
  ResponseCache off(0);
  off.put(req("a", {1}));
  EXPECT_FALSE(off.lookup(req("a", {1})));
}

TEST(CollectivesUnit, ForEachBitVisitsSetBitsInOrder) {
  std::vector<uint64_t> bits(3, 0);
  for (int64_t i : {0, 5, 63, 64, 130}) set_bit(bits, i);
  std::vector<int64_t> seen;
  for_each_bit(bits, [&](int64_t i) { seen.push_back(i); });
  EXPECT_EQ(seen, (std::vector<int64_t>{0, 5, 63, 64, 130}));
  EXPECT_TRUE(any_bit(bits));
  EXPECT_FALSE(any_bit(std::vector<uint64_t>(2, 0)));
}

// The coordinator of a 2-rank job whose rank 1 is scripted: each cycle it "receives" the list set here.
class ScriptedControlPlane final : public ControlPlane {
 public:
  int rank() const override { return 0; }
  int size() const override { return 2; }
  void send_to_coordinator(const std::vector<uint8_t>&, Clock::time_point) override { KOLO_FAIL("unused"); }
  std::vector<std::vector<uint8_t>> gather_at_coordinator(Clock::time_point) override {
    return {{}, serialize(from_rank1)};
  }
  void send_from_coordinator(const std::vector<uint8_t>& msg, const std::vector<int>& to) override {
    EXPECT_EQ(to, std::vector<int>{1});
    sent = deserialize_response_list(msg);
  }
  std::vector<uint8_t> receive_from_coordinator(Clock::time_point) override { KOLO_FAIL("unused"); }
  RequestList from_rank1;
  ResponseList sent;
};

TEST(CollectivesUnit, CoordinatorCachedSteadyStateAndMixedCycles) {
  Config cfg;
  ResponseCache cache(64);
  ScriptedControlPlane cp;
  Controller ctl(cp, cfg, cache);
  auto list = [&](std::vector<Request> full, std::vector<int64_t> slots, int rank) {
    RequestList l;
    for (auto& r : full) r.rank = rank;
    l.requests = std::move(full);
    l.cached_bits.assign(cache.words(), 0);
    for (int64_t s : slots) set_bit(l.cached_bits, s);
    return l;
  };
  // Cycle 1: both ranks send "a" and "b" in full; the answer is full responses, which every rank caches.
  cp.from_rank1 = list({req("b", {4}), req("a", {2})}, {}, 1);
  ResponseList r = ctl.cycle(list({req("a", {2}), req("b", {4})}, {}, 0));
  ASSERT_EQ(r.responses.size(), 2u);
  EXPECT_EQ(r.responses[0].names[0], "a");  // the order in which they became ready on the coordinator
  for (const auto& resp : r.responses) cache.put(resp.params[0]);
  const int64_t sa = *cache.lookup(req("a", {2})), sb = *cache.lookup(req("b", {4}));
  // Cycle 2: steady state, both ranks send the same bits: the answer is those bits and nothing else.
  cp.from_rank1 = list({}, {sa, sb}, 1);
  r = ctl.cycle(list({}, {sa, sb}, 0));
  EXPECT_TRUE(r.responses.empty());
  EXPECT_TRUE(test_bit(r.cached_ready, sa) && test_bit(r.cached_ready, sb));
  EXPECT_EQ(cp.sent.cached_ready, r.cached_ready);
  // Cycles 3-4: rank 0 offers "a" one cycle before rank 1; nothing is ready until both did.
  cp.from_rank1 = list({}, {}, 1);
  r = ctl.cycle(list({}, {sa}, 0));
  EXPECT_FALSE(any_bit(r.cached_ready));
  EXPECT_TRUE(r.responses.empty());
  cp.from_rank1 = list({}, {sa}, 1);
  r = ctl.cycle(list({}, {}, 0));
  EXPECT_TRUE(test_bit(r.cached_ready, sa));
  EXPECT_FALSE(test_bit(r.cached_ready, sb));
  // Cycle 5: rank 0 hits the cache for "b" while rank 1 sends "b" with another shape: one error for both.
  cp.from_rank1 = list({req("b", {5})}, {}, 1);
  r = ctl.cycle(list({}, {sb}, 0));
  EXPECT_FALSE(any_bit(r.cached_ready));
  ASSERT_EQ(r.responses.size(), 1u);
  EXPECT_NE(r.responses[0].error.find("mismatched requests for tensor 'b'"), std::string::npos);
  EXPECT_NE(r.responses[0].error.find("[4] vs [5]"), std::string::npos);
  // Cycle 6: an allgather's first dimension may differ: rank 1's full request beside rank 0's bit is one
  // full response with rank 0's (the agreed) parameters.
  Request g0 = req("g", {2, 3}), g1 = req("g", {5, 3});
  g0.op = g1.op = OpType::Allgather;
  cache.put(g0);
  const int64_t sg = *cache.lookup(g0);
  EXPECT_FALSE(cache.lookup(g1));
  cp.from_rank1 = list({g1}, {}, 1);
  r = ctl.cycle(list({}, {sg}, 0));
  ASSERT_EQ(r.responses.size(), 1u);
  EXPECT_TRUE(r.responses[0].error.empty());
  EXPECT_EQ(r.responses[0].params[0].shape, (Shape{2, 3}));
  // Cycle 7: rank 1 failed inside a collective while both ranks offer the cached "a": nothing runs, and
  // every rank is told to abort with rank 1's message.
  cp.from_rank1 = list({}, {sa}, 1);
  cp.from_rank1.failure = "kolo: rank 1 failed in ALLREDUCE 'x': out of memory";
  r = ctl.cycle(list({}, {sa}, 0));
  EXPECT_EQ(r.abort, cp.from_rank1.failure);
  EXPECT_EQ(cp.sent.abort, r.abort);
  EXPECT_FALSE(any_bit(r.cached_ready));
  EXPECT_TRUE(r.responses.empty());
  // Cycle 8: the coordinator itself failed: rank 1 is told at once (it may be waiting inside the collective
  // and send no list), whatever rank 1 would have sent.
  cp.from_rank1 = list({}, {sa}, 1);
  cp.sent = ResponseList{};
  RequestList mine = list({}, {sa}, 0);
  mine.failure = "kolo: rank 0 failed in ALLGATHER 'g': out of memory";
  r = ctl.cycle(mine);
  EXPECT_EQ(r.abort, mine.failure);
  EXPECT_EQ(cp.sent.abort, mine.failure);
}

TEST(CollectivesUnit, FusionPlanRespectsThresholdAndCompatibility) {
  std::vector<Request> ready = {req("a", {16}), req("b", {16}), req("c", {16}, DType::F64), req("d", {16})};
  ready.push_back(req("e", {16}));
  ready[4].op = OpType::Broadcast;
  auto g = plan_fusion(ready, 1 << 20);
  ASSERT_EQ(g.size(), 3u);
  EXPECT_EQ(g[0].items, (std::vector<size_t>{0, 1, 3}));
  EXPECT_EQ(g[1].items, (std::vector<size_t>{2}));
  EXPECT_EQ(g[2].op, OpType::Broadcast);
  auto small = plan_fusion({req("a", {16}), req("b", {16}), req("c", {16})}, 128);  // 64 B each, aligned
  ASSERT_EQ(small.size(), 2u);
  EXPECT_EQ(small[0].items.size(), 2u);
}

TEST(CollectivesUnit, DeviceBucketsAreConsecutiveAndBounded) {
  using Ranges = std::vector<std::pair<size_t, size_t>>;
  const std::vector<int64_t> bytes = {10, 20, 5, 40, 1, 1, 30};
  EXPECT_EQ(plan_device_buckets(bytes, 35), (Ranges{{0, 3}, {3, 4}, {4, 7}}));  // 35 | 40 alone | 32
  EXPECT_EQ(plan_device_buckets(bytes, 0), (Ranges{{0, 7}}));
  EXPECT_EQ(plan_device_buckets(bytes, 1), (Ranges{{0, 1}, {1, 2}, {2, 3}, {3, 4}, {4, 5}, {5, 6}, {6, 7}}));
  EXPECT_EQ(plan_device_buckets(bytes, 1000), (Ranges{{0, 7}}));
  EXPECT_TRUE(plan_device_buckets({}, 35).empty());
  EXPECT_EQ(plan_device_buckets({0, 0, 50}, 10), (Ranges{{0, 2}, {2, 3}}));
}

TEST(CollectivesUnit, AdjacentRunsJoinViewsOfOneStorage) {
  float mem[200];
  const int flat = 0, other = 1;  // two allocations: `flat` is mem[0, 100), `other` is mem[100, 110)
  auto view = [&](int storage, int64_t off, int64_t n) {
    return InPlaceSpan{mem + (storage == flat ? 0 : 100) + off, n, &mem[storage == flat ? 0 : 100], off};
  };
  // Views of `flat` listed out of order with a gap at [60, 70) and empty views; `other` starts where `flat`
  // ends in memory but is another allocation; the last span has no storage.
  const std::vector<InPlaceSpan> spans = {view(flat, 30, 30), view(other, 0, 10), view(flat, 0, 10),
                                          view(flat, 90, 0),  view(flat, 70, 30), view(flat, 10, 20),
                                          view(flat, 60, 0),  {mem + 150, 5, nullptr, 0}};
  const std::vector<MemoryRun> runs = adjacent_runs(spans);
  // Ordered by each run's first tensor in the group, members in memory order.
  const std::vector<MemoryRun> want = {{mem, 60, {2, 5, 0}}, {mem + 100, 10, {1}}, {mem + 70, 30, {4}},
                                       {mem + 150, 5, {7}}};
  ASSERT_EQ(runs.size(), want.size());
  for (size_t k = 0; k < runs.size(); ++k) {
    EXPECT_EQ(runs[k].data, want[k].data) << "run " << k;
    EXPECT_EQ(runs[k].count, want[k].count) << "run " << k;
    EXPECT_EQ(runs[k].members, want[k].members) << "run " << k;
  }
  // The signature depends on membership and order only.
  EXPECT_EQ(run_signature(runs), run_signature(want));
  std::vector<MemoryRun> swapped = want;
  std::swap(swapped[1], swapped[2]);
  EXPECT_NE(run_signature(swapped), run_signature(want));
  EXPECT_NE(run_signature({{mem, 60, {2, 5}}, {mem + 70, 30, {0}}}), run_signature({{mem, 60, {2}}, {mem, 30, {5, 0}}}));
  // Views sharing memory under two names give no runs: the fusion buffer keeps the copies apart.
  EXPECT_TRUE(adjacent_runs({view(flat, 0, 10), view(flat, 5, 10)}).empty());
  EXPECT_TRUE(adjacent_runs({view(flat, 0, 10), view(flat, 0, 10)}).empty());
  EXPECT_TRUE(adjacent_runs({}).empty());
}

TEST(CollectivesUnit, DeviceSpansJoinOnlyInPlaceViews) {
  float mem[40];
  const std::vector<DeviceSpan> flat = {{mem + 10, mem + 10, 10, mem, 10}, {mem, mem, 10, mem, 0}};
  ASSERT_EQ(in_place_runs(flat).size(), 1u);
  EXPECT_EQ(in_place_runs(flat)[0].count, 20);
  EXPECT_EQ(in_place_runs(flat)[0].members, (std::vector<size_t>{1, 0}));
  // Without a storage, touching memory stays apart; one out-of-place span means no runs at all.
  EXPECT_EQ(in_place_runs({{mem, mem, 10}, {mem + 10, mem + 10, 10}}).size(), 2u);
  EXPECT_TRUE(in_place_runs({{mem, mem, 10, mem, 0}, {mem + 10, mem + 20, 10, mem, 10}}).empty());
}

// Every rank must make the same NCCL calls from spans of the same counts. Ranks whose layouts differ are only
// checked when a bucket holds several non-empty tensors, so a bucket of one must give one reduction of its
// count whatever the layout: in place, out of place, a joined rank's zeros (no storage).
TEST(CollectivesUnit, DirectReductionsOfOneTensorIgnoreLayout) {
  float mem[300];
  const std::vector<std::vector<DeviceSpan>> layouts = {
      {{mem, mem, 0, mem, 0}, {mem, mem, 100, mem, 0}, {mem + 100, mem + 100, 0, mem, 100}},
      {{mem, mem + 150, 0}, {mem, mem + 100, 100}, {mem, mem, 0}},
      {{mem + 200, mem + 200, 0}, {mem + 200, mem + 200, 100}, {mem + 200, mem + 200, 0}}};
  for (size_t k = 0; k < layouts.size(); ++k)
    for (bool where_they_lie : {true, false}) {
      const std::vector<DeviceSpan> d = direct_reductions(layouts[k], where_they_lie, 8);
      ASSERT_EQ(d.size(), 1u) << "layout " << k;
      EXPECT_EQ(d[0].in, layouts[k][1].in) << "layout " << k;
      EXPECT_EQ(d[0].out, layouts[k][1].out) << "layout " << k;
      EXPECT_EQ(d[0].count, 100) << "layout " << k;
    }
  // Several tensors: their in-place runs, unless the ranks' runs differ or there are too many of them; no
  // non-empty tensor at all goes through the (empty) fusion buffer on every rank.
  const std::vector<DeviceSpan> slots = {{mem + 10, mem + 10, 10, mem, 10}, {mem, mem, 10, mem, 0},
                                         {mem + 50, mem + 50, 5}};
  const std::vector<DeviceSpan> d = direct_reductions(slots, true, 8);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0].out, mem);
  EXPECT_EQ(d[0].count, 20);
  EXPECT_EQ(d[1].out, mem + 50);
  EXPECT_EQ(d[1].count, 5);
  EXPECT_TRUE(direct_reductions(slots, false, 8).empty());
  EXPECT_TRUE(direct_reductions(slots, true, 1).empty());
  EXPECT_TRUE(direct_reductions({{mem, mem + 20, 10}, {mem + 10, mem + 10, 10}}, true, 8).empty());
  EXPECT_TRUE(direct_reductions({{mem, mem, 0}, {mem, mem + 20, 0}}, true, 8).empty());
  EXPECT_TRUE(direct_reductions({}, true, 8).empty());
}

TEST(CollectivesUnit, BackendFallbackOrder) {
  EXPECT_EQ(backend_fallback_order("auto", true, true), (std::vector<std::string>{"mpi", "loopback"}));
  EXPECT_EQ(backend_fallback_order("auto", true, false), (std::vector<std::string>{"loopback"}));
  EXPECT_EQ(backend_fallback_order("auto", false, true), (std::vector<std::string>{"loopback"}));
  EXPECT_EQ(backend_fallback_order("loopback", true, true), (std::vector<std::string>{"loopback"}));
  EXPECT_EQ(backend_fallback_order("mpi", true, false), (std::vector<std::string>{"mpi"}));
  EXPECT_THROW(backend_fallback_order("mpi", false, false), Error);
  EXPECT_THROW(backend_fallback_order("nccl2", true, true), Error);
}

TEST(CollectivesUnit, HalfReductionsComputeInFloat) {
  std::vector<bf16> a = {bf16(1.0f), bf16(-2.0f), bf16(3.0f)}, b = {bf16(0.5f), bf16(4.0f), bf16(-3.0f)};
  coll::reduce_into(a.data(), b.data(), 3, DType::BF16, ReduceOp::Sum);
  EXPECT_EQ(static_cast<float>(a[0]), 1.5f);
  EXPECT_EQ(static_cast<float>(a[1]), 2.0f);
  EXPECT_EQ(static_cast<float>(a[2]), 0.0f);
  std::vector<f16> c = {f16(3.0f)}, d = {f16(-5.0f)};
  coll::reduce_into(c.data(), d.data(), 1, DType::F16, ReduceOp::Min);
  EXPECT_EQ(static_cast<float>(c[0]), -5.0f);
  std::vector<int32_t> i = {7, -7};
  coll::divide_buffer(i.data(), 2, DType::I32, 2);
  EXPECT_EQ(i, (std::vector<int32_t>{3, -3}));
  EXPECT_THROW(coll::scale_buffer(i.data(), 2, DType::I32, 0.5), Error);
}

TEST(CollectivesUnit, ConfigFromEnvAndValidation) {
  setenv("KOLO_FUSION_THRESHOLD", "1048576", 1);
  setenv("KOLO_CYCLE_TIME", "2.5", 1);
  setenv("KOLO_COMPRESSION", "bf16", 1);
  setenv("KOLO_SHM_ALLREDUCE", "0", 1);
  setenv("KOLO_SHM_CONTROL_PLANE", "0", 1);
  Config c = Config::from_env();
  EXPECT_FALSE(c.shm_allreduce);
  EXPECT_FALSE(c.shm_control_plane);
  EXPECT_EQ(c.fusion_threshold, 1048576);
  EXPECT_EQ(c.cycle_time_ms, 2.5);
  EXPECT_EQ(c.compression, Compression::BF16);
  setenv("KOLO_CYCLE_TIME", "fast", 1);
  EXPECT_THROW(Config::from_env(), Error);
  unsetenv("KOLO_FUSION_THRESHOLD");
  unsetenv("KOLO_CYCLE_TIME");
  unsetenv("KOLO_COMPRESSION");
  unsetenv("KOLO_SHM_ALLREDUCE");
  unsetenv("KOLO_SHM_CONTROL_PLANE");
  Config bad;
  bad.backend = "carrier-pigeon";
  EXPECT_THROW(bad.validate(), Error);
}

TEST(CollectivesUnit, LoopbackRuntimeRunsEveryOp) {
  Config cfg;
  cfg.backend = "loopback";
  Runtime rt(cfg);
  EXPECT_EQ(rt.size(), 1);
  EXPECT_EQ(rt.backend_name(), "loopback");
  Tensor t = Tensor::from_vector(std::vector<float>{1, 2, 3}, {3});
  AllreduceOptions o;
  o.op = ReduceOp::Average;
  o.postscale = 2;
  EXPECT_EQ(allreduce(rt, t, "lb.ar", o).to_vector<float>(), (std::vector<float>{2, 4, 6}));
  EXPECT_EQ(allgather(rt, t.view({3, 1}), "lb.ag").shape(), (Shape{3, 1}));
  broadcast(rt, t, 0, "lb.bc");
  EXPECT_EQ(reducescatter(rt, t, "lb.rs").to_vector<float>(), (std::vector<float>{1, 2, 3}));
  std::vector<int64_t> rs;
  EXPECT_EQ(alltoall(rt, t, {}, "lb.a2a", &rs).to_vector<float>(), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(rs, (std::vector<int64_t>{3}));
  barrier(rt);
  bool called = false;
  rt.allreduce_async(t, "lb.cb", {}, {}, [&](const std::string& err) { called = err.empty(); }).wait();
  EXPECT_TRUE(called);
  EXPECT_EQ(join(rt), 0);
  rt.shutdown();
  EXPECT_THROW(rt.allreduce_async(t, "late"), Error);
}

}  // namespace
}  // namespace kolo
