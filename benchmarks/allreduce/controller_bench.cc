// kolo_controller_bench: the controller path's cost per tensor. ResNet-50's 161 gradients, as slices of one flat
// buffer (as the DistributedOptimizer holds them), are averaged through kolo::Runtime three ways per step:
// enqueued one by one then all waited for (as backward hooks would), enqueued as one group
// (grouped_allreduce_async), and as one tensor of the same bytes. The two 161-tensor rows pay the per-tensor
// host cost (entries, ready events, negotiation, handles) on top of the one-tensor row. Each row gives the
// median, p10 and p90 step time over all ranks (slowest rank per step), the enqueue share, and the
// negotiation cycles and collectives per step.
// With --gap_us G a fourth row enqueues them one by one G us apart, as backward hooks fire between layers, and
// reports what each enqueue costs the calling thread (p50 / p99). With --busy_gib B (cuda) that row first queues
// B GiB of fills on the device each step, so that the GPU runs behind the host as in a backward pass and the
// launched groups are still in flight while the later gradients arrive.
// Run: mpirun -np N [--bind-to none] kolo_controller_bench [--device cuda] [--steps 300] [--tiny]
//      [--gap_us 100 [--busy_gib 60]]   (--tiny: 161 one-float tensors, the host cost alone)
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include <cxxopts.hpp>

#include "benchmarks/allreduce/resnet50_sizes.h"
#include "collectives/runtime.h"

namespace {

using Clock = std::chrono::steady_clock;
using kolo::Handle;
using kolo::Runtime;
using kolo::Tensor;

double us(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::micro>(b - a).count(); }

double pct(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))];
}

struct Row {
  std::vector<double> step, enqueue;
  double cycles = 0, collectives = 0;
};

constexpr int kWarmup = 10;  // untimed steps first

// `submit` enqueues one step's tensors and returns their handles; every rank starts each step together.
template <typename F>
Row measure(Runtime& rt, int steps, F&& submit) {
  for (int i = 0; i < kWarmup; ++i) kolo::wait_all(submit());
  Row r;
  const kolo::CollectiveStats s0 = rt.stats();
  for (int i = 0; i < steps; ++i) {
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = Clock::now();
    std::vector<Handle> hs = submit();
    const auto t1 = Clock::now();
    kolo::wait_all(hs);
    double t[2] = {us(t0, Clock::now()), us(t0, t1)};
    MPI_Allreduce(MPI_IN_PLACE, t, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    r.step.push_back(t[0]);
    r.enqueue.push_back(t[1]);
  }
  const kolo::CollectiveStats s1 = rt.stats();
  r.cycles = static_cast<double>(s1.cycles - s0.cycles) / steps;
  r.collectives = static_cast<double>(s1.collectives - s0.collectives) / steps;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  cxxopts::Options options("kolo_controller_bench", "The controller path's cost per tensor (ResNet-50's 161 gradients)");
  options.add_options()
      ("device", "cpu or cuda", cxxopts::value<std::string>()->default_value("cpu"))
      ("steps", "timed steps per row", cxxopts::value<int>()->default_value("300"))
      ("tiny", "161 one-float tensors instead of ResNet-50's sizes: the host cost alone")
      ("gap_us", "add a row enqueuing one by one this many us apart (0: no such row)",
       cxxopts::value<double>()->default_value("0"))
      ("busy_gib", "cuda, with --gap_us: GiB filled on the device before each step of that row",
       cxxopts::value<int>()->default_value("0"))
      ("h,help", "this help");
  int rc = 0;
  try {
    const auto args = options.parse(argc, argv);
    if (args.count("help")) {
      std::printf("%s\n", options.help().c_str());
      MPI_Finalize();
      return 0;
    }
    const std::string device = args["device"].as<std::string>();
    KOLO_CHECK(device == "cpu" || device == "cuda", "kolo_controller_bench: --device must be cpu or cuda, got ",
               device);
    const int steps = args["steps"].as<int>();
    KOLO_CHECK(steps > 0, "kolo_controller_bench: --steps must be positive, got ", steps);
    Runtime rt;
    const kolo::Device dev = device == "cuda" ? kolo::Device::cuda(rt.local_rank()) : kolo::Device::cpu();
    std::vector<int64_t> sizes = kolo::bench::resnet50_sizes();
    if (args.count("tiny")) std::fill(sizes.begin(), sizes.end(), 1);
    const int64_t total = std::accumulate(sizes.begin(), sizes.end(), int64_t{0});
    Tensor flat = Tensor::ones({total}, kolo::DType::F32, dev);
    std::vector<Tensor> slots;
    std::vector<std::string> names;
    int64_t off = 0;
    for (size_t k = 0; k < sizes.size(); ++k) {
      slots.push_back(flat.slice(0, off, off + sizes[k]));
      off += sizes[k];
      names.push_back("resnet50.grad." + std::to_string(k));
    }
    // Backward produces the last layers' gradients first.
    std::reverse(slots.begin(), slots.end());
    std::reverse(names.begin(), names.end());
    kolo::AllreduceOptions avg;
    avg.op = kolo::ReduceOp::Average;
    // The 161 slots enqueued one by one, `gap` us apart; with `per_call`, what each enqueue cost this thread.
    auto enqueue_each = [&](double gap, std::vector<double>* per_call) {
      std::vector<Handle> hs;
      hs.reserve(slots.size());
      for (size_t k = 0; k < slots.size(); ++k) {
        if (gap > 0)
          for (const auto g0 = Clock::now(); us(g0, Clock::now()) < gap;) {
          }
        const auto c0 = per_call ? Clock::now() : Clock::time_point{};
        hs.push_back(rt.allreduce_async(slots[k], names[k], avg));
        if (per_call) per_call->push_back(us(c0, Clock::now()));
      }
      return hs;
    };
    const Row one_by_one = measure(rt, steps, [&] { return enqueue_each(0, nullptr); });
    const Row grouped = measure(rt, steps, [&] { return rt.grouped_allreduce_async(slots, names, avg); });
    const double gap = args["gap_us"].as<double>();
    const int busy_gib = args["busy_gib"].as<int>();
    KOLO_CHECK(gap >= 0 && busy_gib >= 0, "kolo_controller_bench: --gap_us and --busy_gib must not be negative");
    KOLO_CHECK(busy_gib == 0 || (gap > 0 && device == "cuda"), "kolo_controller_bench: --busy_gib needs --gap_us and "
               "--device cuda");
    Tensor busy = busy_gib > 0 ? Tensor::empty({int64_t{1} << 28}, kolo::DType::F32, dev) : Tensor();
    std::vector<double> per_call;  // what each spaced enqueue of the timed steps cost the calling thread
    int spaced_steps = 0;
    const Row spaced = gap <= 0 ? Row{} : measure(rt, steps, [&] {
      const bool timed = ++spaced_steps > kWarmup;
      for (int g = 0; g < busy_gib; ++g) busy.fill_(1.0);
      return enqueue_each(gap, timed ? &per_call : nullptr);
    });
    const Row one = measure(rt, steps, [&] { return std::vector<Handle>{rt.allreduce_async(flat, "resnet50.flat", avg)}; });
    if (rt.rank() == 0) {
      std::printf("# kolo_controller_bench: %d ranks, %s tensors, %zu tensors of %lld floats in all (%.1f MB), Average,"
                  " %d steps\n",
                  rt.size(), device.c_str(), sizes.size(), static_cast<long long>(total), total * 4.0 / 1e6, steps);
      std::printf("# %-28s %10s %10s %10s %12s %8s %12s\n", "", "median(us)", "p10", "p90", "enqueue(us)", "cycles",
                  "collectives");
      auto print = [&](const char* what, const Row& r) {
        std::printf("  %-28s %10.1f %10.1f %10.1f %12.1f %8.1f %12.1f\n", what, pct(r.step, 0.5), pct(r.step, 0.1),
                    pct(r.step, 0.9), pct(r.enqueue, 0.5), r.cycles, r.collectives);
      };
      print("161 enqueued one by one", one_by_one);
      print("161 as one group", grouped);
      print("one tensor, same bytes", one);
      std::printf("  one by one / one tensor     %10.2f x\n  group / one tensor          %10.2f x\n",
                  pct(one_by_one.step, 0.5) / pct(one.step, 0.5), pct(grouped.step, 0.5) / pct(one.step, 0.5));
      if (gap > 0)
        std::printf("  161 one by one, %.0f us apart%s: step %.1f us, %.1f cycles; per enqueue p50 %.2f us, p99 %.2f us "
                    "(rank 0)\n",
                    gap, busy_gib > 0 ? ", device busy" : "", pct(spaced.step, 0.5), spaced.cycles, pct(per_call, 0.5),
                    pct(per_call, 0.99));
    }
    rt.shutdown();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kolo_controller_bench: %s\n", e.what());
    rc = 1;
  }
  MPI_Finalize();
  return rc;
}
