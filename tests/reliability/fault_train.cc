// Fault scenarios in a real data-parallel training loop (small MLP, Sgd inside a DistributedOptimizer), run
// under mpirun by run_fault.cmake, which checks that every rank exits non-zero with the expected message
// within the time limit (or, for `join`, that the run completes and matches a local reference).
//
// Usage: kolo_fault_train SCENARIO, where SCENARIO is one of
//   kill            the last rank SIGKILLs itself in the middle of backward (from a grad-ready hook)
//   stall           the last rank skips a metric allreduce the others make: the stall inspector names it
//   mismatch_shape  the last rank's model has a wider hidden layer: gradient shapes differ
//   mismatch_dtype  the last rank reduces its loss metric as f64, the others as f32
//   exception       the last rank throws std::runtime_error inside the loop (caught in main, so its Runtime
//                   is destroyed during unwinding while its peers wait for its gradients)
//   join            rank r has 3 + r batches; ranks join() when done; the result equals a local reference
//   shutdown_join   the last rank shuts its Runtime down without joining while the others wait in join()
//   execute_failure rank 0 alone fails inside an agreed alltoall (it cannot count the rows it receives), then
//                   carries on: its next collective must fail with its own report, not pair with its peers'
// Every rank that leaves through an error prints one line "FAULT-EXIT rank R code C after S s: MESSAGE".
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "collectives/runtime.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/nn.h"
#include "core/ops/reduce.h"
#include "optim/distributed_optimizer.h"
#include "optim/sgd.h"

namespace kolo {
namespace {

using Clock = std::chrono::steady_clock;

struct Mlp {
  std::vector<NamedParameter> params;
  explicit Mlp(const std::vector<int64_t>& widths) {
    Generator gen(7);
    for (size_t l = 0; l + 1 < widths.size(); ++l) {
      const double s = 1.0 / std::sqrt(static_cast<double>(widths[l]));
      params.push_back({"l" + std::to_string(l) + ".w",
                        Tensor::uniform({widths[l + 1], widths[l]}, -s, s, gen).set_requires_grad(true)});
      params.push_back({"l" + std::to_string(l) + ".b",
                        Tensor::uniform({widths[l + 1]}, -s, s, gen).set_requires_grad(true)});
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

constexpr int64_t kIn = 6, kHidden = 16, kOut = 3, kBatch = 8;

// Rank `rank`'s batch of step `step`: the same on every process, so a reference can be computed locally.
std::pair<Tensor, Tensor> batch(int rank, int step) {
  Generator gen(1000 + 97 * rank + step);
  return {Tensor::randn({kBatch, kIn}, gen), Tensor::randn({kBatch, kOut}, gen)};
}

SgdOptions sgd() { return SgdOptions{.lr = 0.05}; }

void run_fault(Runtime& rt, const std::string& scenario) {
  const int last = rt.size() - 1;
  const bool odd = rt.rank() == last;
  const int64_t hidden = scenario == "mismatch_shape" && odd ? kHidden + 1 : kHidden;
  Mlp model({kIn, hidden, kHidden, kOut});
  Sgd inner(model.params, sgd());
  DistributedOptimizer opt(inner, rt);
  if (scenario != "mismatch_shape") broadcast_parameters(rt, model.params);
  if (scenario == "shutdown_join") {
    // join() completes only once every rank joined, which the last rank never will.
    if (odd) {
      rt.shutdown();
      rt.allreduce_async(Tensor::ones({1}), "after.shutdown").wait();  // throws what stopped the runtime
    } else {
      rt.join_async().wait();
    }
    return;
  }
  if (scenario == "execute_failure") {
    // Every other rank sends rank 0 2^62 rows of zero width: they hold them, but rank 0 cannot count what it
    // receives (int64), so it alone fails inside the agreed collective while its peers are already in it (they
    // wait there until the watchdog). Rank 0 then carries on, like a program that skips a bad batch.
    const int64_t rows = rt.rank() == 0 ? 0 : int64_t{1} << 62;
    std::vector<int64_t> splits(rt.size(), 0);
    splits[0] = rows;
    try {
      rt.alltoall_async(Tensor::empty({rows, 0}), splits, "shuffle").wait();
    } catch (const Error&) {
      if (rt.rank() != 0) throw;
    }
  }
  if (scenario == "kill" && odd)
    model.params[0].tensor.register_grad_ready_hook([&](Tensor&) {
      if (inner.step_count() == 2) std::raise(SIGKILL);
    });
  for (int step = 0; step < 6; ++step) {
    auto [x, y] = batch(rt.rank(), step);
    opt.zero_grad();
    Tensor loss = model.loss(x, y);
    if (scenario == "exception" && odd && step == 2)
      throw std::runtime_error("data loader: corrupt record in shard " + std::to_string(rt.rank()));
    loss.backward();
    opt.step();
    const bool skip_metric = scenario == "stall" && odd && step == 2;
    if (!skip_metric) {
      Tensor m = loss.detach().reshape({1});
      if (scenario == "mismatch_dtype" && odd) m = m.to(DType::F64);
      AllreduceOptions avg;
      avg.op = ReduceOp::Average;
      rt.allreduce_async(m, "loss.step" + std::to_string(step), avg).wait();
    }
  }
}

// Uneven data: rank r trains on 3 + r batches, then joins. Joined ranks contribute zeros to Average (which
// still divides by the world size), so step s moves by the sum of the active ranks' gradients / size.
// Returns the largest parameter difference from that reference, computed locally.
double run_join(Runtime& rt) {
  const int n = rt.size();
  const int steps = 3 + rt.rank();
  Mlp model({kIn, kHidden, kHidden, kOut});
  Sgd inner(model.params, sgd());
  DistributedOptimizer opt(inner, rt);
  broadcast_parameters(rt, model.params);
  for (int step = 0; step < steps; ++step) {
    auto [x, y] = batch(rt.rank(), step);
    opt.zero_grad();
    model.loss(x, y).backward();
    opt.step();
  }
  const int last_to_join = static_cast<int>(rt.join_async().value());
  // The ranks that joined early hold stale parameters: take them from the rank that trained longest.
  broadcast_parameters(rt, model.params, last_to_join);

  Mlp ref({kIn, kHidden, kHidden, kOut});
  Sgd ref_opt(ref.params, sgd());
  for (int step = 0; step < 3 + n - 1; ++step) {
    ref_opt.zero_grad();
    for (int q = 0; q < n; ++q) {
      if (step >= 3 + q) continue;
      auto [x, y] = batch(q, step);
      scale(ref.loss(x, y), 1.0 / n).backward();
    }
    ref_opt.step();
  }
  double worst = 0;
  for (size_t i = 0; i < model.params.size(); ++i) {
    auto a = model.params[i].tensor.to_vector<float>(), b = ref.params[i].tensor.to_vector<float>();
    for (size_t k = 0; k < a.size(); ++k) worst = std::max(worst, std::abs(double(a[k]) - b[k]));
  }
  return worst;
}

}  // namespace
}  // namespace kolo

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr,
                 "usage: %s kill|stall|mismatch_shape|mismatch_dtype|exception|join|shutdown_join|execute_failure\n",
                 argv[0]);
    return 2;
  }
  const std::string scenario = argv[1];
  const auto t0 = kolo::Clock::now();
  int rank = -1;
  auto report = [&](int code, const char* what) {
    const double s = std::chrono::duration<double>(kolo::Clock::now() - t0).count();
    std::printf("FAULT-EXIT rank %d code %d after %.1f s: %s\n", rank, code, s, what);
    std::fflush(stdout);
    return code;
  };
  try {
    kolo::Runtime rt;
    rank = rt.rank();
    if (scenario == "join") {
      const double worst = kolo::run_join(rt);
      std::printf("JOIN-%s rank %d: max |param - reference| = %.3g\n", worst < 1e-5 ? "OK" : "WRONG", rank, worst);
      std::fflush(stdout);
      return worst < 1e-5 ? 0 : 1;
    }
    kolo::run_fault(rt, scenario);
    std::printf("FAULT-NOT-DETECTED rank %d finished scenario %s\n", rank, scenario.c_str());
    std::fflush(stdout);
    return 0;
  } catch (const kolo::Error& e) {
    return report(3, e.what());
  } catch (const std::exception& e) {
    return report(4, e.what());
  }
}
