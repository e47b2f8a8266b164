// kolorun's pure core: from options plus a snapshot of the machine to the exact mpirun/srun command and
// environment. Nothing here reads the real environment or executes anything, so every case is unit-testable.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "launch/topology.h"

namespace kolo::launch {

enum class Launcher { Auto, Mpirun, Srun };

// Binding presets. None leaves ranks free (Horovod's default, and the safe choice when ranks share cores);
// Core gives each rank its own block of cores-per-rank cores; Socket and Numa pin each rank to one
// socket / NUMA domain, the layout of the seed's 2–4-ranks-per-Xeon-node runs.
enum class Binding { None, Core, Socket, Numa };

struct LaunchOptions {
  int np = 0;                    // 0: one rank per slot (or ppn × nodes)
  std::string host_list;         // -H "a:2,b:2"
  std::string hostfile;          // --hostfile path
  int ppn = 0;                   // processes per node; 0: fill hosts slot by slot
  Binding binding = Binding::None;
  std::string map_by;            // explicit mpirun --map-by, replacing the preset's
  int omp_threads = 0;           // 0: derive from cores per rank
  int cores_per_node = 0;        // 0: detect (Slurm allocation, else this machine)
  int comm_cores = 1;            // cores per rank left to kolo's communication thread
  bool oversubscribe = false;    // allow more ranks than slots
  Launcher launcher = Launcher::Auto;
  std::string mpirun = "mpirun";
  std::string srun = "srun";
  std::vector<std::string> env;            // -x NAME (forward) or NAME=VALUE (set and forward)
  std::vector<std::string> launcher_args;  // extra arguments for mpirun/srun, placed before the program
  std::vector<std::string> command;        // program and its arguments
};

// The world as kolorun sees it, injected so tests can describe any machine.
struct LaunchEnvironment {
  std::map<std::string, std::string> vars;  // the process environment
  unsigned uid = 1000;
  CpuTopology local;
  // Resolves a program name (PATH search) or path (must be an executable file); empty when not found.
  std::function<std::optional<std::string>(const std::string&)> find_executable;
  // Returns a file's contents; throws kolo::Error when it cannot be read.
  std::function<std::string(const std::string&)> read_file;
};

struct LaunchPlan {
  std::vector<std::string> argv;                            // argv[0] is the resolved launcher path
  std::vector<std::pair<std::string, std::string>> env;     // set in the launcher's environment, sorted
  Launcher launcher = Launcher::Mpirun;
  int ranks = 0;
  int nodes = 0;
  int ranks_per_node = 0;  // the most ranks any node runs; threads are sized for that node
  int cores_per_rank = 0;
  int omp_threads = 0;
  std::vector<std::string> notes;  // one line per decision, printed with --verbose / --dry-run
};

// Environment variables forwarded to every rank without being asked for (as -x NAME under mpirun; srun
// exports the whole environment anyway): kolo's and NCCL's knobs, CUDA device selection, the loader paths.
bool forwarded_by_default(const std::string& name);

// Builds the plan; an impossible request (more ranks than slots without --oversubscribe, a missing
// launcher or program, a malformed hostfile, contradicting options) is a kolo::Error saying what to change.
LaunchPlan build_launch_plan(const LaunchOptions& options, const LaunchEnvironment& environment);

// The plan as one shell line: `NAME=value ... /usr/bin/mpirun -np 2 ...`, quoted so it can be pasted.
std::string format_command(const LaunchPlan& plan);

// Quotes one word for a POSIX shell; words of safe characters stay as they are.
std::string shell_quote(const std::string& word);

const char* binding_name(Binding binding);

}  // namespace kolo::launch
