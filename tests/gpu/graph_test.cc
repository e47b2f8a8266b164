// CUDA Graphs (core/device/cuda/cuda_graph.h): the allocator's private pools, replay of captured work on
// refilled inputs, a captured training step equal to the same steps run eagerly (also through a capturable
// SGD optimizer whose learning rate changes between replays), and a host synchronisation during capture
// reported as kolo::Error with the stream still usable.
#include <string>

#include "core/autograd/grad_mode.h"
#include "core/device/cuda/cuda_graph.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/reduce.h"
#include "optim/adam.h"
#include "optim/sgd.h"
#include "tests/gpu/gpu_test_util.h"

namespace kolo::testing {
namespace {

TEST_F(GpuTest, PrivatePoolKeepsItsBlocksForItself) {
  CudaCachingAllocator alloc(CudaCachingAllocator::Kind::Device, 0);
  auto s = CudaStream::create(0);
  const int key = 0;
  alloc.begin_private_pool(s->get(), &key);
  EXPECT_THROW(alloc.begin_private_pool(s->get(), &key), Error);  // one pool per stream at a time
  void* a = alloc.allocate(4096, s->get());
  alloc.end_private_pool(s->get());
  alloc.deallocate(a, 4096);
  void* b = alloc.allocate(4096, s->get());  // the stream's own blocks, not the pool's
  EXPECT_NE(a, b);
  alloc.deallocate(b, 4096);
  alloc.empty_cache();
  EXPECT_EQ(alloc.stats().reserved, BlockPool::kSmallSegment) << "the pinned pool's segment stays reserved";
  alloc.begin_private_pool(s->get(), &key);
  void* c = alloc.allocate(4096, s->get());  // reopened: the pool's free block again
  EXPECT_EQ(c, a);
  alloc.end_private_pool(s->get());
  alloc.deallocate(c, 4096);
  alloc.release_private_pool(&key);
  alloc.empty_cache();
  EXPECT_EQ(alloc.stats().reserved, 0u);
}

TEST_F(GpuTest, GraphReplaysCapturedWorkOnRefilledInputs) {
  Tensor x = random_cpu({64, 96}, DType::F32, -1.0, 1.0, 1).to(gpu());
  Tensor w = random_cpu({48, 96}, DType::F32, -1.0, 1.0, 2).to(gpu());
  Tensor out = Tensor::zeros({64, 48}, DType::F32, gpu());
  auto work = [&] { out.copy_(add(relu(linear(x, w)), scale(x.slice(1, 0, 48), 0.5))); };
  CudaGraph graph(0);
  EXPECT_THROW(graph.replay(), Error);
  graph.capture(work);
  EXPECT_TRUE(graph.captured());
  EXPECT_EQ(out.to(Device::cpu()).to_vector<float>(), std::vector<float>(64 * 48, 0.0f)) << "capture ran the work";
  for (uint64_t seed : {3, 4}) {
    x.copy_(random_cpu({64, 96}, DType::F32, -1.0, 1.0, seed));
    graph.replay();
    Tensor want = add(relu(linear(x, w)), scale(x.slice(1, 0, 48), 0.5));
    EXPECT_EQ(relative_error(out, want), 0.0) << "seed " << seed;
  }
  EXPECT_THROW(graph.capture(work), Error);  // captured once
}

// Two copies of a two-layer regression trained with plain SGD: eagerly, and by replaying the captured step.
TEST_F(GpuTest, CapturedTrainingStepMatchesEagerSteps) {
  struct Net {
    Tensor w1, b1, w2;
    std::vector<Tensor*> params() { return {&w1, &b1, &w2}; }
  };
  auto make = [&] {
    return Net{random_cpu({32, 16}, DType::F32, -0.3, 0.3, 5).to(gpu()).set_requires_grad(true),
               random_cpu({32}, DType::F32, -0.1, 0.1, 6).to(gpu()).set_requires_grad(true),
               random_cpu({4, 32}, DType::F32, -0.3, 0.3, 7).to(gpu()).set_requires_grad(true)};
  };
  Net eager = make(), graphed = make();
  Tensor x = random_cpu({128, 16}, DType::F32, -1.0, 1.0, 8).to(gpu());
  Tensor target = random_cpu({128, 4}, DType::F32, -1.0, 1.0, 9).to(gpu());
  Tensor loss_out = Tensor::zeros({}, DType::F32, gpu());
  auto step = [&](Net& n) {
    for (Tensor* p : n.params()) p->zero_grad();
    Tensor loss = mean(square(sub(linear(relu(linear(x, n.w1, n.b1)), n.w2), target)));
    loss.backward();
    NoGradGuard ng;
    for (Tensor* p : n.params()) add_(*p, p->grad(), -0.05);
    loss_out.copy_(loss);
  };
  step(graphed);  // warm-up, as a training program does before capturing
  step(eager);
  CudaGraph graph(0);
  graph.capture([&] { step(graphed); });
  double first = 0, last = 0;
  for (int i = 0; i < 20; ++i) {
    graph.replay();
    step(eager);
    last = loss_out.item();
    if (i == 0) first = last;
  }
  EXPECT_LT(last, first) << "the replayed steps train";
  for (size_t i = 0; i < 3; ++i)
    EXPECT_LE(relative_error(*graphed.params()[i], *eager.params()[i]), 1e-6) << "parameter " << i;
}

// A captured optimizer step replayed across learning-rate changes against its eager twin (bf16 parameters
// with f32 masters). Adam's capturable kernel makes its bias corrections in float from the device step count
// where the eager one takes them from the host in double, hence `tol`. With `capture_first_step`, the graph
// holds the very first step, where SGD's momentum buffer starts as the gradient: a replay must not restart it.
template <typename Opt, typename Options>
void captured_step_matches_eager(const Options& o, double tol, bool capture_first_step = false) {
  const Device gpu = Device::cuda(0);
  auto make = [&](uint64_t seed) {
    return std::vector<NamedParameter>{
        {"w", random_cpu({8, 16}, DType::F32, -0.3, 0.3, seed).to(gpu).to(DType::BF16).set_requires_grad(true)},
        {"b", random_cpu({8}, DType::F32, -0.1, 0.1, seed + 1).to(gpu).to(DType::BF16).set_requires_grad(true)}};
  };
  std::vector<NamedParameter> pe = make(11), pg = make(11);
  Opt eager(pe, o), graphed(pg, o);
  graphed.set_capturable(true);
  Tensor x = random_cpu({64, 16}, DType::F32, -1.0, 1.0, 12).to(gpu).to(DType::BF16);
  Tensor target = random_cpu({64, 8}, DType::F32, -1.0, 1.0, 13).to(gpu);
  auto step = [&](Opt& opt, std::vector<NamedParameter>& p) {
    opt.zero_grad();
    mean(square(sub(linear(x, p[0].tensor, p[1].tensor).to(DType::F32), target))).backward();
    opt.step();
  };
  if (!capture_first_step) {
    step(eager, pe);  // warm-up, the momentum buffers' first step
    step(graphed, pg);
  }
  CudaGraph graph(0);
  graphed.set_lr(o.lr / 2);
  eager.set_lr(o.lr / 2);
  graph.capture([&] { step(graphed, pg); });
  graph.replay();  // the captured step's own execution
  step(eager, pe);
  for (double f : {2.0, 0.1, 1.0}) {
    graphed.set_lr(o.lr * f);
    graph.replay();
    graphed.note_replayed_step();
    eager.set_lr(o.lr * f);
    step(eager, pe);
  }
  for (size_t i = 0; i < pe.size(); ++i) EXPECT_LE(relative_error(pg[i].tensor, pe[i].tensor), tol) << pe[i].name;
  EXPECT_EQ(graphed.step_count(), eager.step_count());
}

TEST_F(GpuTest, CapturedOptimizerStepFollowsTheLearningRate) {
  captured_step_matches_eager<Sgd>(SgdOptions{.lr = 0.1, .momentum = 0.9}, 0.0);
}

TEST_F(GpuTest, SgdStepCapturedAtTheFirstStepKeepsItsMomentum) {
  captured_step_matches_eager<Sgd>(SgdOptions{.lr = 0.1, .momentum = 0.9}, 0.0, /*capture_first_step=*/true);
}

TEST_F(GpuTest, CapturedAdamStepFollowsTheLearningRateAndStepCount) {
  captured_step_matches_eager<AdamW>(AdamOptions{.lr = 0.01, .weight_decay = 0.1}, 1e-2);
}

TEST_F(GpuTest, HostSyncDuringCaptureThrowsAndLeavesTheStreamUsable) {
  Tensor x = random_cpu({256}, DType::F32, -1.0, 1.0, 10).to(gpu());
  CudaGraph graph(0);
  try {
    graph.capture([&] { (void)sum(x).item(); });
    FAIL() << "a host read during capture must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("capture"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(graph.captured());
  EXPECT_NEAR(sum(scale(x, 2.0)).item(), 2.0 * sum(x).item(), 1e-4);
}

}  // namespace
}  // namespace kolo::testing
