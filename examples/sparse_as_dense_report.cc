// Accumulation size of a tied embedding's gradient exchange: TensorFlow/Horovod's default sparse path
// (allgather IndexedSlices, accumulate the concatenation) versus sparse_as_dense (densify, allreduce).
// Part 1 computes it for Transformer-big at 1..64 ranks with the arithmetic shown; part 2 measures both
// paths for real with the DistributedOptimizer on this job's ranks (run under mpirun -np 2..8).
#include <chrono>
#include <cstdio>
#include <string>

#include <cxxopts.hpp>

#include "collectives/runtime.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/nn.h"
#include "optim/distributed_optimizer.h"
#include "optim/sgd.h"
#include "optim/sparse_report.h"

using namespace kolo;

namespace {

double mib(int64_t b) { return static_cast<double>(b) / (1024.0 * 1024.0); }

void analytic(int64_t vocab, int64_t dim, int64_t tokens) {
  std::printf("# Part 1: Transformer-big shared embedding %lld x %lld, tied with the output projection,\n"
              "#         %lld embedding lookups per rank per step (source + target tokens), f32 values, i64 indices\n",
              static_cast<long long>(vocab), static_cast<long long>(dim), static_cast<long long>(tokens));
  std::printf("%6s %14s %16s %16s %10s\n", "ranks", "gathered_rows", "sparse_MiB", "dense_MiB", "ratio");
  for (int64_t n : {1, 2, 4, 8, 16, 32, 64}) {
    auto r = sparse_exchange_report({.vocab = vocab, .dim = dim, .tokens_per_rank = tokens, .ranks = n});
    std::printf("%6lld %14lld %16.1f %16.1f %10.1f\n", static_cast<long long>(n),
                static_cast<long long>(r.gathered_rows), mib(r.sparse_bytes), mib(r.dense_bytes), r.ratio);
  }
  auto r64 = sparse_exchange_report({.vocab = vocab, .dim = dim, .tokens_per_rank = tokens, .ranks = 64});
  std::printf("\n# at 64 ranks:\n%s\n", r64.computation.c_str());
  // Values-only ratio = 64 * (vocab + tokens) / vocab; the lookups per rank that would give the seed's 82x.
  const double tokens_for_82 = (82.0 / 64.0 - 1.0) * static_cast<double>(vocab);
  std::printf("# values only: 64 x (%lld + %lld) / %lld = %.1fx; the seed's 82x corresponds to ~%.0f lookups "
              "per rank\n\n",
              static_cast<long long>(vocab), static_cast<long long>(tokens), static_cast<long long>(vocab),
              64.0 * static_cast<double>(vocab + tokens) / static_cast<double>(vocab), tokens_for_82);
}

struct Measured {
  GradientExchangeStats stats;
  double ms_per_step = 0;
};

Measured measure(Runtime& rt, bool sparse_as_dense, int64_t vocab, int64_t dim, int64_t tokens, int steps) {
  Generator gen(1);
  Tensor emb = Tensor::randn({vocab, dim}, gen);
  scale_(emb, 0.05);
  emb.set_requires_grad(true);
  emb.set_keep_sparse_grad(true);  // TensorFlow's IndexedSlices accumulation for the tied matrix
  Sgd inner({{"shared_embedding", emb}}, SgdOptions{.lr = 0.1});
  DistributedOptimizer opt(inner, rt, {.sparse_as_dense = sparse_as_dense});
  std::vector<int64_t> ids(tokens), tg(tokens);
  double total_ms = 0;
  for (int s = 0; s < steps + 1; ++s) {  // step 0 warms up (and teaches the optimizer the gradient's form)
    for (int64_t i = 0; i < tokens; ++i) {
      ids[i] = (i * 7919 + s * 131 + rt.rank() * 17) % vocab;
      tg[i] = (i * 104729 + s) % vocab;
    }
    const auto t0 = std::chrono::steady_clock::now();
    opt.zero_grad();
    Tensor h = embedding(emb, Tensor::from_vector(ids, {tokens}));
    cross_entropy(matmul(h, emb.transpose(0, 1)), Tensor::from_vector(tg, {tokens})).backward();
    opt.step();
    const auto t1 = std::chrono::steady_clock::now();
    if (s == 0) {
      opt.reset_stats();
    } else {
      total_ms += std::chrono::duration<double, std::milli>(t1 - t0).count();
    }
  }
  return {opt.stats(), total_ms / steps};
}

}  // namespace

int main(int argc, char** argv) {
  cxxopts::Options cli("sparse_as_dense_report", "Accumulation size of sparse vs sparse_as_dense gradient exchange");
  cli.add_options()("vocab", "Transformer-big vocabulary", cxxopts::value<int64_t>()->default_value("32768"))(
      "dim", "Transformer-big d_model", cxxopts::value<int64_t>()->default_value("1024"))(
      "tokens", "lookups per rank per step (4096 source + 4096 target)", cxxopts::value<int64_t>()->default_value("8192"))(
      "measure-vocab", "vocabulary of the measured model", cxxopts::value<int64_t>()->default_value("8192"))(
      "measure-dim", "d_model of the measured model", cxxopts::value<int64_t>()->default_value("256"))(
      "measure-tokens", "lookups per rank in the measured model", cxxopts::value<int64_t>()->default_value("1024"))(
      "steps", "measured steps per path", cxxopts::value<int>()->default_value("3"))("h,help", "help");
  const auto a = cli.parse(argc, argv);
  if (a.count("help")) {
    std::printf("%s\n", cli.help().c_str());
    return 0;
  }
  Runtime rt;
  if (rt.rank() == 0) analytic(a["vocab"].as<int64_t>(), a["dim"].as<int64_t>(), a["tokens"].as<int64_t>());

  const int64_t v = a["measure-vocab"].as<int64_t>(), d = a["measure-dim"].as<int64_t>(),
                t = a["measure-tokens"].as<int64_t>();
  const int steps = a["steps"].as<int>();
  const Measured sp = measure(rt, false, v, d, t, steps);
  const Measured de = measure(rt, true, v, d, t, steps);
  if (rt.rank() == 0) {
    auto pred = sparse_exchange_report({.vocab = v, .dim = d, .tokens_per_rank = t, .ranks = rt.size()});
    const double sp_bytes = static_cast<double>(sp.stats.sparse_gathered_bytes) / steps;
    const double de_bytes = static_cast<double>(de.stats.dense_allreduce_bytes) / steps;
    std::printf("# Part 2: measured on %d rank(s) (%s backend): tied embedding %lld x %lld, %lld lookups/rank, "
                "%d steps\n", rt.size(), rt.backend_name().c_str(), static_cast<long long>(v),
                static_cast<long long>(d), static_cast<long long>(t), steps);
    std::printf("%-16s %14s %14s %14s %12s\n", "path", "rows/step", "MiB/step", "predicted_MiB", "ms/step");
    std::printf("%-16s %14lld %14.2f %14.2f %12.2f\n", "sparse(default)",
                static_cast<long long>(sp.stats.sparse_gathered_rows / steps), mib(static_cast<int64_t>(sp_bytes)),
                mib(pred.sparse_bytes), sp.ms_per_step);
    std::printf("%-16s %14lld %14.2f %14.2f %12.2f\n", "sparse_as_dense", static_cast<long long>(v),
                mib(static_cast<int64_t>(de_bytes)), mib(pred.dense_bytes), de.ms_per_step);
    std::printf("measured ratio %.2fx (predicted %.2fx)\n", sp_bytes / de_bytes, pred.ratio);
  }
  rt.shutdown();
  return 0;
}
