// DistributedOptimizer under mpirun (2-4 ranks): N ranks x batch B equals one process with batch N*B,
// backward_passes_per_step, sparse vs sparse_as_dense, unused parameters, overlap with backward,
// broadcasts and metric averaging. Expected values are computed on every rank by a local single-process
// run over the global batch (derived from fixed seeds), never by communicating.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>

#include "tests/common/mpi_gtest.h"
#include "collectives/runtime.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/nn.h"
#include "core/ops/reduce.h"
#include "optim/adam.h"
#include "optim/distributed_optimizer.h"
#include "optim/sgd.h"

namespace kolo {
namespace {

Runtime* g_rt = nullptr;

// An MLP whose parameters come from a fixed seed: identical on every rank.
struct Mlp {
  std::vector<NamedParameter> params;
  explicit Mlp(const std::vector<int64_t>& widths, uint64_t seed = 3) {
    Generator gen(seed);
    for (size_t l = 0; l + 1 < widths.size(); ++l) {
      const double s = 1.0 / std::sqrt(static_cast<double>(widths[l]));
      params.push_back({"l" + std::to_string(l) + ".w",
                        Tensor::uniform({widths[l + 1], widths[l]}, -s, s, gen).set_requires_grad(true)});
      params.push_back({"l" + std::to_string(l) + ".b",
                        Tensor::uniform({widths[l + 1]}, -s, s, gen).set_requires_grad(true)});
    }
  }
  Tensor forward(const Tensor& x) const {
    Tensor h = x;
    for (size_t i = 0; i < params.size(); i += 2) {
      h = linear(h, params[i].tensor, params[i + 1].tensor);
      if (i + 2 < params.size()) h = relu(h);
    }
    return h;
  }
  Tensor loss(const Tensor& x, const Tensor& y) const { return mean(square(sub(forward(x), y))); }
};

// Global batch `step` of n rows, identical on every rank.
std::pair<Tensor, Tensor> global_batch(int64_t n, int64_t in, int64_t out, int step) {
  Generator gen(100 + step);
  return {Tensor::randn({n, in}, gen), Tensor::randn({n, out}, gen)};
}

void expect_params_near(const std::vector<NamedParameter>& a, const std::vector<NamedParameter>& b, double tol) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    auto va = a[i].tensor.to_vector<float>(), vb = b[i].tensor.to_vector<float>();
    ASSERT_EQ(va.size(), vb.size());
    double worst = 0;
    for (size_t k = 0; k < va.size(); ++k) worst = std::max(worst, std::abs(double(va[k]) - vb[k]));
    EXPECT_LE(worst, tol) << a[i].name << " on rank " << g_rt->rank();
  }
}

SgdOptions sgd_opts() { return SgdOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-3, .nesterov = true}; }

TEST(DistributedOptimizer, NRanksBatchBEqualsOneRankBatchNB) {
  Runtime& rt = *g_rt;
  const int n = rt.size(), r = rt.rank();
  const int64_t B = 6, in = 5, out = 3;
  Mlp ref({in, 16, 8, out}), dist({in, 16, 8, out});
  // Non-root ranks start from different values: broadcast_parameters must make them equal.
  if (r != 0)
    for (auto& p : dist.params) add_(p.tensor, Tensor::full(p.tensor.shape(), 0.5 * r));
  Sgd ref_opt(ref.params, sgd_opts());
  Sgd inner(dist.params, sgd_opts());
  DistributedOptimizer opt(inner, rt);
  broadcast_parameters(rt, dist.params);
  expect_params_near(dist.params, ref.params, 0);
  for (int step = 0; step < 4; ++step) {
    auto [x, y] = global_batch(n * B, in, out, step);
    ref_opt.zero_grad();
    ref.loss(x, y).backward();
    ref_opt.step();
    opt.zero_grad();
    dist.loss(x.slice(0, r * B, (r + 1) * B), y.slice(0, r * B, (r + 1) * B)).backward();
    opt.step();
  }
  expect_params_near(dist.params, ref.params, 2e-6);
  EXPECT_EQ(opt.stats().steps, 4);
  EXPECT_EQ(opt.stats().sparse_gathered_bytes, 0);
}

TEST(DistributedOptimizer, BackwardPassesPerStepEqualsLargerBatch) {
  Runtime& rt = *g_rt;
  const int n = rt.size(), r = rt.rank();
  const int64_t B = 4, k = 3, in = 4, out = 2;
  Mlp ref({in, 8, out}), dist({in, 8, out});
  Adam ref_opt(ref.params, AdamOptions{.lr = 0.01});
  Adam inner(dist.params, AdamOptions{.lr = 0.01});
  DistributedOptimizer opt(inner, rt, {.backward_passes_per_step = static_cast<int>(k)});
  for (int step = 0; step < 3; ++step) {
    auto [x, y] = global_batch(n * k * B, in, out, step);
    ref_opt.zero_grad();
    ref.loss(x, y).backward();
    ref_opt.step();
    opt.zero_grad();
    for (int64_t pass = 0; pass < k; ++pass) {
      const int64_t lo = (r * k + pass) * B;
      dist.loss(x.slice(0, lo, lo + B), y.slice(0, lo, lo + B)).backward();
    }
    opt.step();
  }
  expect_params_near(dist.params, ref.params, 5e-6);
}

TEST(DistributedOptimizer, ExtraBackwardPassIsAnError) {
  Runtime& rt = *g_rt;
  Mlp m({2, 2});
  Sgd inner(m.params, SgdOptions{.lr = 0.1});
  DistributedOptimizer opt(inner, rt);
  opt.zero_grad();
  Tensor x = Tensor::ones({1, 2}), y = Tensor::zeros({1, 2});
  m.loss(x, y).backward();
  EXPECT_THROW(m.loss(x, y).backward(), Error);
  opt.step();  // the first pass's exchange still completes on every rank
}

TEST(DistributedOptimizer, UnusedParameterContributesZeros) {
  // "extra" gets a gradient only on rank 0; the others offer zeros at step() instead of hanging.
  Runtime& rt = *g_rt;
  Tensor used = Tensor::ones({3}).set_requires_grad(true);
  Tensor extra = Tensor::ones({2}).set_requires_grad(true);
  Sgd inner({{"used", used}, {"extra", extra}}, SgdOptions{.lr = 1.0});
  DistributedOptimizer opt(inner, rt);
  for (int step = 0; step < 2; ++step) {
    opt.zero_grad();
    Tensor loss = sum(used);
    if (rt.rank() == 0) loss = add(loss, sum(extra));
    loss.backward();
    opt.step();
  }
  // Each step: used -= 1 (mean of ones), extra -= 1/n (rank 0's ones averaged with zeros).
  for (float v : used.to_vector<float>()) EXPECT_FLOAT_EQ(v, -1.0f);
  for (float v : extra.to_vector<float>()) EXPECT_NEAR(v, 1.0 - 2.0 / rt.size(), 1e-6);
  bool saw_sync_enqueue = false;
  for (const auto& e : opt.enqueue_log()) saw_sync_enqueue |= !e.from_hook;
  EXPECT_EQ(saw_sync_enqueue, rt.rank() != 0);
}

// Tied embedding [V, D] used for lookups and as the output projection (Transformer's shared embedding).
struct TiedLm {
  NamedParameter emb;
  explicit TiedLm(int64_t v, int64_t d) {
    Generator gen(11);
    emb = {"emb", Tensor::randn({v, d}, gen).set_requires_grad(true)};
    emb.tensor.set_keep_sparse_grad(true);  // TensorFlow's IndexedSlices accumulation
  }
  Tensor loss(const Tensor& ids, const Tensor& targets) const {
    Tensor h = embedding(emb.tensor, ids);                 // sparse rows
    Tensor logits = matmul(h, emb.tensor.transpose(0, 1));  // dense use of the same matrix
    return cross_entropy(logits, targets);
  }
};

std::pair<Tensor, Tensor> token_batch(int64_t n, int64_t vocab, int step) {
  std::vector<int64_t> ids(n), tg(n);
  for (int64_t i = 0; i < n; ++i) {
    ids[i] = (i * 7 + step * 3) % vocab;
    tg[i] = (i * 5 + step + 1) % vocab;
  }
  return {Tensor::from_vector(ids, {n}), Tensor::from_vector(tg, {n})};
}

TEST(DistributedOptimizer, SparseAndSparseAsDenseGiveTheSameUpdate) {
  Runtime& rt = *g_rt;
  const int n = rt.size(), r = rt.rank();
  const int64_t V = 12, D = 4, T = 5;
  TiedLm ref(V, D), sparse(V, D), dense(V, D);
  Adam ref_opt({ref.emb}, AdamOptions{.lr = 0.05});
  Adam in_sparse({sparse.emb}, AdamOptions{.lr = 0.05});
  Adam in_dense({dense.emb}, AdamOptions{.lr = 0.05});
  DistributedOptimizer opt_sparse(in_sparse, rt);
  DistributedOptimizer opt_dense(in_dense, rt, {.sparse_as_dense = true});
  const int steps = 3;
  for (int step = 0; step < steps; ++step) {
    auto [ids, tg] = token_batch(n * T, V, step);
    ref_opt.zero_grad();
    ref.loss(ids, tg).backward();
    ref_opt.step();
    Tensor my_ids = ids.slice(0, r * T, (r + 1) * T), my_tg = tg.slice(0, r * T, (r + 1) * T);
    opt_sparse.zero_grad();
    sparse.loss(my_ids, my_tg).backward();
    opt_sparse.step();
    opt_dense.zero_grad();
    dense.loss(my_ids, my_tg).backward();
    opt_dense.step();
  }
  expect_params_near({sparse.emb}, {dense.emb}, 2e-6);
  expect_params_near({sparse.emb}, {ref.emb}, 2e-6);
  // Accumulation sizes: the sparse path gathers n x (V + T) rows per step; the dense one reduces V x D.
  const auto s = opt_sparse.stats(), d = opt_dense.stats();
  EXPECT_EQ(s.sparse_gathered_rows, steps * n * (V + T));
  EXPECT_EQ(s.sparse_gathered_bytes, steps * n * (V + T) * (D * 4 + 8));
  EXPECT_EQ(s.dense_allreduce_bytes, 0);
  EXPECT_EQ(d.dense_allreduce_bytes, steps * V * D * 4);
  EXPECT_EQ(d.sparse_gathered_bytes, 0);
}

// A parameter declared sparse whose gradient arrives dense (a tied matrix without keep_sparse_grad: autograd
// merges the rows into a dense gradient, accumulated in the optimizer's slot): sparse_as_dense allreduces it as
// it is. It used to zero the slot first, so the parameter never moved.
TEST(DistributedOptimizer, SparseAsDenseOfADenseGradient) {
  Runtime& rt = *g_rt;
  const int n = rt.size(), r = rt.rank();
  const int64_t V = 10, D = 3, T = 4;
  TiedLm ref(V, D), dist(V, D);
  ref.emb.tensor.set_keep_sparse_grad(false);
  dist.emb.tensor.set_keep_sparse_grad(false);
  const Tensor initial = dist.emb.tensor.detach().clone();
  Sgd ref_opt({ref.emb}, SgdOptions{.lr = 0.5, .momentum = 0.9});
  Sgd inner({dist.emb}, SgdOptions{.lr = 0.5, .momentum = 0.9});
  DistributedOptimizer opt(inner, rt, {.sparse_as_dense = true, .sparse_params = {"emb"}});
  for (int step = 0; step < 3; ++step) {
    auto [ids, tg] = token_batch(n * T, V, step);
    ref_opt.zero_grad();
    for (int q = 0; q < n; ++q)
      scale(ref.loss(ids.slice(0, q * T, (q + 1) * T), tg.slice(0, q * T, (q + 1) * T)), 1.0 / n).backward();
    ref_opt.step();
    opt.zero_grad();
    dist.loss(ids.slice(0, r * T, (r + 1) * T), tg.slice(0, r * T, (r + 1) * T)).backward();
    opt.step();
  }
  expect_params_near({dist.emb}, {ref.emb}, 2e-6);
  const auto now = dist.emb.tensor.to_vector<float>(), before = initial.to_vector<float>();
  double moved = 0;
  for (size_t k = 0; k < now.size(); ++k) moved = std::max(moved, std::abs(double(now[k]) - before[k]));
  EXPECT_GT(moved, 0.01);
}

TEST(DistributedOptimizer, UntiedEmbeddingUnusedOnSomeRanks) {
  // Pure lookups; rank 0 looks nothing up in step 0 (declared sparse, so it offers an empty block).
  Runtime& rt = *g_rt;
  const int n = rt.size(), r = rt.rank();
  const int64_t V = 9, D = 3, T = 4;
  Generator gen(5);
  Tensor w = Tensor::randn({V, D}, gen).set_requires_grad(true);
  Tensor w_ref = w.detach().clone().set_requires_grad(true);
  Sgd inner({{"emb", w}}, SgdOptions{.lr = 0.5, .momentum = 0.9});
  Sgd ref_opt({{"emb", w_ref}}, SgdOptions{.lr = 0.5, .momentum = 0.9});
  DistributedOptimizer opt(inner, rt, {.sparse_params = {"emb"}});
  for (int step = 0; step < 2; ++step) {
    auto [ids, tg] = token_batch(n * T, V, step);
    Tensor target = Tensor::full({n * T, D}, 0.25);
    // Reference: mean over ranks of each rank's mean loss (rank 0 contributes nothing in step 0).
    ref_opt.zero_grad();
    for (int q = 0; q < n; ++q) {
      if (step == 0 && q == 0) continue;
      Tensor l = mean(square(sub(embedding(w_ref, ids.slice(0, q * T, (q + 1) * T)), target.slice(0, 0, T))));
      scale(l, 1.0 / n).backward();
    }
    ref_opt.step();
    opt.zero_grad();
    if (!(step == 0 && r == 0))
      mean(square(sub(embedding(w, ids.slice(0, r * T, (r + 1) * T)), target.slice(0, 0, T)))).backward();
    opt.step();
  }
  expect_params_near({{"emb", w}}, {{"emb", w_ref}}, 2e-6);
}

TEST(DistributedOptimizer, OverlapEnqueuesLastLayersBeforeBackwardEnds) {
  Runtime& rt = *g_rt;
  Mlp m({32, 64, 64, 64, 64, 8});
  Sgd inner(m.params, SgdOptions{.lr = 0.01});
  DistributedOptimizer opt(inner, rt);
  auto [x, y] = global_batch(16, 32, 8, 0);
  opt.zero_grad();
  m.loss(x, y).backward();
  const auto backward_end = std::chrono::steady_clock::now();
  const auto log = opt.enqueue_log();
  opt.step();
  ASSERT_EQ(log.size(), m.params.size());
  for (const auto& e : log) {
    EXPECT_TRUE(e.from_hook) << e.name;
    EXPECT_LT(e.when, backward_end) << e.name;
  }
  // The last layer's gradients are exchanged first, the first layer's last.
  EXPECT_TRUE(log.front().name == "grad.l4.b" || log.front().name == "grad.l4.w") << log.front().name;
  EXPECT_TRUE(log.back().name == "grad.l0.w" || log.back().name == "grad.l0.b") << log.back().name;
}

TEST(DistributedOptimizer, PredivideAndCompression) {
  Runtime& rt = *g_rt;
  const int n = rt.size(), r = rt.rank();
  const int64_t B = 4;
  Mlp ref({3, 4, 2}), a({3, 4, 2}), b({3, 4, 2});
  Sgd ref_opt(ref.params, SgdOptions{.lr = 0.1});
  Sgd ia(a.params, SgdOptions{.lr = 0.1}), ib(b.params, SgdOptions{.lr = 0.1});
  DistributedOptimizer oa(ia, rt, {.gradient_predivide_factor = 4.0});
  DistributedOptimizer ob(ib, rt, {.compression = Compression::BF16, .name_prefix = "bf16."});
  auto [x, y] = global_batch(n * B, 3, 2, 0);
  ref_opt.zero_grad();
  ref.loss(x, y).backward();
  ref_opt.step();
  for (auto* pair : {&oa, &ob}) pair->zero_grad();
  a.loss(x.slice(0, r * B, (r + 1) * B), y.slice(0, r * B, (r + 1) * B)).backward();
  b.loss(x.slice(0, r * B, (r + 1) * B), y.slice(0, r * B, (r + 1) * B)).backward();
  oa.step();
  ob.step();
  expect_params_near(a.params, ref.params, 2e-6);
  expect_params_near(b.params, ref.params, 5e-3);  // bf16 wire format: ~3 significant digits
}

TEST(DistributedOptimizer, BroadcastOptimizerStateAndMetricAverage) {
  Runtime& rt = *g_rt;
  // Root takes two local Adam steps; every rank can replay root's run to know what it must receive.
  auto run = [](Mlp& m, Adam& opt, int steps) {
    for (int s = 0; s < steps; ++s) {
      auto [x, y] = global_batch(4, 3, 2, s);
      opt.zero_grad();
      m.loss(x, y).backward();
      opt.step();
    }
  };
  Mlp mine({3, 2}), expect({3, 2});
  Adam opt(mine.params, AdamOptions{.lr = 0.01}), expect_opt(expect.params, AdamOptions{.lr = 0.01});
  run(expect, expect_opt, 2);
  if (rt.rank() == 0) run(mine, opt, 2);
  broadcast_optimizer_state(rt, opt);
  broadcast_parameters(rt, mine.params);
  const OptimizerState got = opt.state_dict(), want = expect_opt.state_dict();
  EXPECT_EQ(got.scalars, want.scalars);
  for (const auto& [key, t] : want.tensors) EXPECT_EQ(got.tensors.at(key).to_vector<float>(), t.to_vector<float>()) << key;
  expect_params_near(mine.params, expect.params, 0);
  EXPECT_DOUBLE_EQ(metric_average(rt, static_cast<double>(rt.rank()), "rank"), (rt.size() - 1) / 2.0);
  auto v = metric_average(rt, {1.0, 2.0 * rt.rank()}, "pair");
  EXPECT_DOUBLE_EQ(v[0], 1.0);
  EXPECT_DOUBLE_EQ(v[1], static_cast<double>(rt.size() - 1));
}

}  // namespace
}  // namespace kolo

int main(int argc, char** argv) { return kolo::testing::run_all_tests_on_every_rank(argc, argv, kolo::g_rt); }
