// kolo_allreduce_bench: nccl-tests-style table (size, count, type, time, algbw, busbw) for kolo's blocking
// allreduce and raw MPI_Allreduce in the same run (16 B to 256 MiB by 4x, so 64 KiB and 16/64/256 MiB are
// rows), then ResNet-50's 161 gradient tensors fused vs one buffer of the same size.
// Run: mpirun -np 2 kolo_allreduce_bench [max_bytes]   (busbw = algbw * 2(n-1)/n, as nccl-tests)
//      mpirun -np 2 -x NCCL_NVLS_ENABLE=0 kolo_allreduce_bench --device cuda [max_bytes]: GPU buffers, kolo
//      over NCCL vs raw ncclAllReduce (nccl_bench.cc; built when kolo has NCCL).
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

#include "benchmarks/allreduce/resnet50_sizes.h"
#include "collectives/ops.h"

namespace {

using Clock = std::chrono::steady_clock;

int iters_for(size_t bytes) { return bytes >= (16u << 20) ? 5 : bytes >= (1u << 20) ? 20 : 100; }

// Median of `reps` timed blocks of `iters` calls (seconds per call), with all ranks starting together.
template <typename F>
double time_per_call(int iters, F&& f) {
  for (int i = 0; i < 2; ++i) f();
  std::vector<double> t;
  for (int rep = 0; rep < 3; ++rep) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = MPI_Wtime();
    for (int i = 0; i < iters; ++i) f();
    double dt = (MPI_Wtime() - t0) / iters;
    MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    t.push_back(dt);
  }
  std::sort(t.begin(), t.end());
  return t[1];
}

}  // namespace

#ifdef KOLO_BENCH_NCCL
namespace kolo::bench {
int run_cuda_allreduce_bench(size_t max_bytes, const std::vector<int64_t>& resnet50_sizes);
}
#endif

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  bool cuda = false;
  if (argc > 2 && std::string(argv[1]) == "--device") {
    if (std::string(argv[2]) != "cuda" && std::string(argv[2]) != "cpu") {
      std::fprintf(stderr, "kolo_allreduce_bench: --device must be cpu or cuda, got %s\n", argv[2]);
      MPI_Finalize();
      return 2;
    }
    cuda = std::string(argv[2]) == "cuda";
    argc -= 2;
    argv += 2;
  }
  const size_t max_bytes = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : (size_t{256} << 20);
  if (cuda) {
#ifdef KOLO_BENCH_NCCL
    int rc = 1;
    try {
      rc = kolo::bench::run_cuda_allreduce_bench(max_bytes, kolo::bench::resnet50_sizes());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "kolo_allreduce_bench: %s\n", e.what());
    }
    MPI_Finalize();
    return rc;
#else
    std::fprintf(stderr, "kolo_allreduce_bench: --device cuda needs kolo built with NCCL (KOLO_WITH_NCCL)\n");
    MPI_Finalize();
    return 2;
#endif
  }
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  {
    kolo::Runtime rt;
    const double bus = 2.0 * (size - 1) / size;
    if (rank == 0) {
      std::printf("# kolo_allreduce_bench: %d ranks, backend %s, chunk %lld B, fusion threshold %lld B\n", size,
                  rt.backend_name().c_str(), static_cast<long long>(rt.config().allreduce_chunk_bytes),
                  static_cast<long long>(rt.config().fusion_threshold));
      std::printf("#                                      raw MPI_Allreduce              kolo allreduce (blocking)\n");
      std::printf("# %12s %12s %6s %10s %8s %8s %10s %8s %8s %8s\n", "size(B)", "count", "type", "time(us)",
                  "algbw", "busbw", "time(us)", "algbw", "busbw", "kolo/raw");
    }
    for (size_t bytes = 16; bytes <= max_bytes; bytes *= 4) {
      const int64_t count = static_cast<int64_t>(bytes / sizeof(float));
      std::vector<float> raw(count, 1.0f);
      kolo::Tensor t = kolo::Tensor::ones({count});
      const int iters = iters_for(bytes);
      const double traw = time_per_call(iters, [&] {
        MPI_Allreduce(MPI_IN_PLACE, raw.data(), static_cast<int>(count), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      });
      const std::string name = "bench." + std::to_string(bytes);
      const double tk = time_per_call(iters, [&] { rt.allreduce_async(t, name).wait(); });
      if (rank == 0)
        std::printf("  %12zu %12lld %6s %10.1f %8.2f %8.2f %10.1f %8.2f %8.2f %8.2f\n", bytes,
                    static_cast<long long>(count), "float", traw * 1e6, bytes / traw / 1e9, bytes / traw / 1e9 * bus,
                    tk * 1e6, bytes / tk / 1e9, bytes / tk / 1e9 * bus, traw / tk);
    }

    // ResNet-50: 161 gradient tensors (25,557,032 floats) fused by kolo vs one buffer of the same size.
    const auto sizes = kolo::bench::resnet50_sizes();
    const int64_t total = std::accumulate(sizes.begin(), sizes.end(), int64_t{0});
    std::vector<kolo::Tensor> grads;
    std::vector<std::string> names;
    for (size_t k = 0; k < sizes.size(); ++k) {
      grads.push_back(kolo::Tensor::ones({sizes[k]}));
      names.push_back("resnet50.grad." + std::to_string(k));
    }
    kolo::Tensor flat = kolo::Tensor::ones({total});
    std::vector<float> raw(total, 1.0f);
    const auto before = rt.stats();
    const double tfused = time_per_call(5, [&] { kolo::wait_all(rt.grouped_allreduce_async(grads, names)); });
    const auto after = rt.stats();
    const double tone = time_per_call(5, [&] { rt.allreduce_async(flat, "resnet50.flat").wait(); });
    const double traw = time_per_call(3, [&] {
      MPI_Allreduce(MPI_IN_PLACE, raw.data(), static_cast<int>(total), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    });
    if (rank == 0) {
      const double mb = total * 4.0;
      std::printf("\n# ResNet-50 gradients: %zu tensors, %lld floats (%.1f MB)\n", sizes.size(),
                  static_cast<long long>(total), mb / 1e6);
      std::printf("  kolo fused 161 tensors  %10.1f us  busbw %6.2f GB/s  (%lld collectives per step, largest fusion %lld)\n",
                  tfused * 1e6, mb / tfused / 1e9 * bus,
                  static_cast<long long>((after.collectives - before.collectives) / 7),
                  static_cast<long long>(after.largest_fusion));
      std::printf("  kolo one buffer         %10.1f us  busbw %6.2f GB/s\n", tone * 1e6, mb / tone / 1e9 * bus);
      std::printf("  raw MPI one buffer      %10.1f us  busbw %6.2f GB/s\n", traw * 1e6, mb / traw / 1e9 * bus);
      std::printf("  fused / one buffer      %10.3f x\n", tfused / tone);
    }
    rt.shutdown();
  }
  MPI_Finalize();
  return 0;
}
