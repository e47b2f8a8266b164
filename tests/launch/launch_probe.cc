// A tiny MPI program kolorun starts in tests: each rank checks size, environment and CPU binding it was
// given, and rank 0 prints one verdict for the whole job.
#include <mpi.h>
#include <sched.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

int allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return -1;
  return CPU_COUNT(&set);
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);

  int ok = 1;
  int fail_rank = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const std::string value = argv[i + 1];
    if (flag == "--expect-size" && std::atoi(value.c_str()) != size) {
      std::printf("rank %d: size %d, expected %s\n", rank, size, value.c_str());
      ok = 0;
    } else if (flag == "--expect-env") {
      const std::string name = value.substr(0, value.find('='));
      const std::string want = value.substr(value.find('=') + 1);
      const char* got = std::getenv(name.c_str());
      if (!got || want != got) {
        std::printf("rank %d: %s=%s, expected %s\n", rank, name.c_str(), got ? got : "(unset)", want.c_str());
        ok = 0;
      }
    } else if (flag == "--expect-cpus" && std::atoi(value.c_str()) != allowed_cpus()) {
      std::printf("rank %d: bound to %d cpus, expected %s\n", rank, allowed_cpus(), value.c_str());
      ok = 0;
    } else if (flag == "--fail-rank") {
      fail_rank = std::atoi(value.c_str());
    }
  }
  const char* threads = std::getenv("OMP_NUM_THREADS");
  std::printf("rank %d of %d: OMP_NUM_THREADS=%s cpus=%d\n", rank, size, threads ? threads : "(unset)",
              allowed_cpus());
  std::fflush(stdout);

  int all_ok = 0;
  MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (rank == 0) std::printf("launch_probe: size=%d %s\n", size, all_ok ? "ok" : "FAILED");
  MPI_Finalize();
  if (rank == fail_rank) return 3;
  return all_ok ? 0 : 1;
}
