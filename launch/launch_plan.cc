// Turns kolorun's options into the mpirun/srun command: host allocation, rank placement, binding, threads.
#include "launch/launch_plan.h"

#include <algorithm>
#include <cctype>
#include <sstream>

#include "core/util/error.h"
#include "launch/hostfile.h"

namespace kolo::launch {
namespace {

using Vars = std::map<std::string, std::string>;

std::optional<std::string> lookup(const Vars& vars, const std::string& name) {
  auto it = vars.find(name);
  if (it == vars.end()) return std::nullopt;
  return it->second;
}

// Strict positive integer from an environment variable; a malformed value names the variable.
std::optional<int> positive_var(const Vars& vars, const std::string& name) {
  const auto text = lookup(vars, name);
  if (!text) return std::nullopt;
  KOLO_CHECK(!text->empty() && text->size() <= 9 &&
                 std::all_of(text->begin(), text->end(), [](char c) { return c >= '0' && c <= '9'; }),
             "kolorun: environment variable ", name, "='", *text, "' is not a positive integer");
  const int value = std::stoi(*text);
  KOLO_CHECK(value > 0, "kolorun: environment variable ", name, " must be at least 1");
  return value;
}

bool is_env_name(const std::string& name) {
  return !name.empty() && !std::isdigit(static_cast<unsigned char>(name.front())) &&
         std::all_of(name.begin(), name.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

// Where ranks may go. pass_to_launcher: the list is handed to mpirun -H / srun --nodelist; a Slurm
// allocation is already known to the launcher and only counted here.
struct Allocation {
  std::vector<HostSlots> hosts;  // slots always resolved
  bool pass_to_launcher = true;
  std::string origin;
  int cores_per_node = 1;
};

Allocation allocate(const LaunchOptions& options, const LaunchEnvironment& environment, bool in_slurm) {
  KOLO_CHECK(options.host_list.empty() || options.hostfile.empty(),
             "kolorun: give hosts either with -H or with --hostfile, not both");
  KOLO_CHECK(options.cores_per_node >= 0, "kolorun: --cores-per-node must be positive, got ", options.cores_per_node);
  Allocation alloc;
  const auto slurm_cpus = in_slurm ? positive_var(environment.vars, "SLURM_CPUS_ON_NODE") : std::nullopt;
  alloc.cores_per_node = options.cores_per_node > 0 ? options.cores_per_node
                         : slurm_cpus               ? *slurm_cpus
                                                    : std::max(1, environment.local.cores);

  if (!options.host_list.empty()) {
    alloc.hosts = parse_host_list(options.host_list);
    alloc.origin = "-H " + options.host_list;
  } else if (!options.hostfile.empty()) {
    KOLO_CHECK(environment.read_file, "kolorun: no file reader to read hostfile ", options.hostfile);
    alloc.hosts = resolve_slots(parse_hostfile(environment.read_file(options.hostfile), options.hostfile),
                                alloc.cores_per_node);
    alloc.origin = "hostfile " + options.hostfile;
  } else if (in_slurm) {
    auto nodes = positive_var(environment.vars, "SLURM_JOB_NUM_NODES");
    if (!nodes) nodes = positive_var(environment.vars, "SLURM_NNODES");
    const int n = nodes.value_or(1);
    const auto ntasks = positive_var(environment.vars, "SLURM_NTASKS");
    const auto per_node = positive_var(environment.vars, "SLURM_NTASKS_PER_NODE");
    const int total = ntasks ? *ntasks : per_node ? *per_node * n : alloc.cores_per_node * n;
    // Slurm's own layout is unknown here; spreading the task count evenly is what block distribution does.
    for (int i = 0; i < n; ++i) {
      const int slots = total / n + (i < total % n ? 1 : 0);
      alloc.hosts.push_back({"slurm-node-" + std::to_string(i), std::max(1, slots)});
    }
    alloc.pass_to_launcher = false;
    alloc.origin = "Slurm job " + lookup(environment.vars, "SLURM_JOB_ID").value_or("?") + " (" +
                   std::to_string(n) + " nodes, " + std::to_string(total) + " tasks)";
  } else {
    // Named explicitly so that mpirun's slot count is the one checked here, --cores-per-node included.
    alloc.hosts = {{"localhost", alloc.cores_per_node}};
    alloc.origin = "this machine (" + std::to_string(alloc.cores_per_node) + " cores)";
  }
  return alloc;
}

// Ranks placed on each host, in host order, the way mpirun's by-slot / ppr mapping fills them.
std::vector<int> place_ranks(const Allocation& alloc, int np, int ppn) {
  const int nodes = static_cast<int>(alloc.hosts.size());
  std::vector<int> placed(nodes, 0);
  int remaining = np;
  if (ppn > 0) {
    for (int i = 0; i < nodes && remaining > 0; ++i) remaining -= placed[i] = std::min(ppn, remaining);
    return placed;
  }
  for (int i = 0; i < nodes && remaining > 0; ++i) remaining -= placed[i] = std::min(*alloc.hosts[i].slots, remaining);
  // Oversubscribed: spread the rest evenly so no node takes all of it.
  for (int i = 0; remaining > 0; i = (i + 1) % nodes, --remaining) ++placed[i];
  return placed;
}

int total_slots(const Allocation& alloc) {
  long total = 0;
  for (const auto& host : alloc.hosts) total += *host.slots;
  return static_cast<int>(std::min<long>(total, 1 << 30));
}

// The binding domain count of one node for a preset (sockets or NUMA nodes of this machine's shape).
int domains_per_node(Binding binding, const CpuTopology& topo) {
  if (binding == Binding::Socket) return std::max(1, topo.sockets);
  if (binding == Binding::Numa) return std::max(1, topo.numa_nodes);
  return 1;
}

}  // namespace

const char* binding_name(Binding binding) {
  switch (binding) {
    case Binding::None: return "none";
    case Binding::Core: return "core";
    case Binding::Socket: return "socket";
    case Binding::Numa: return "numa";
  }
  return "?";
}

bool forwarded_by_default(const std::string& name) {
  static const char* const prefixes[] = {"KOLO_", "NCCL_", "OMP_", "CUDA_", "UCX_"};
  for (const char* prefix : prefixes) {
    if (name.rfind(prefix, 0) == 0) return true;
  }
  return name == "PATH" || name == "LD_LIBRARY_PATH";
}

LaunchPlan build_launch_plan(const LaunchOptions& options, const LaunchEnvironment& environment) {
  KOLO_CHECK(environment.find_executable, "kolorun: no executable resolver given");
  KOLO_CHECK(!options.command.empty(), "kolorun: no program to run (usage: kolorun [options] program [args...])");
  KOLO_CHECK(options.np >= 0, "kolorun: -np must be positive, got ", options.np);
  KOLO_CHECK(options.ppn >= 0, "kolorun: --ppn must be positive, got ", options.ppn);
  KOLO_CHECK(options.omp_threads >= 0, "kolorun: --omp-threads must be positive, got ", options.omp_threads);
  KOLO_CHECK(options.comm_cores >= 0, "kolorun: --comm-cores must be 0 or more, got ", options.comm_cores);

  LaunchPlan plan;
  const bool in_slurm = environment.vars.count("SLURM_JOB_ID") > 0;

  // ---- launcher
  plan.launcher = options.launcher;
  if (plan.launcher == Launcher::Auto) {
    plan.launcher = in_slurm && environment.find_executable(options.srun) ? Launcher::Srun : Launcher::Mpirun;
  }
  const bool srun = plan.launcher == Launcher::Srun;
  const std::string& launcher_name = srun ? options.srun : options.mpirun;
  const auto launcher_path = environment.find_executable(launcher_name);
  if (!launcher_path) {
    if (srun) {
      KOLO_FAIL("kolorun: srun launcher '", launcher_name,
                "' not found; run inside a Slurm allocation, pass --srun PATH, or use --launcher mpirun");
    }
    KOLO_FAIL("kolorun: mpirun launcher '", launcher_name,
              "' not found; install Open MPI (Debian: apt-get install openmpi-bin) or pass --mpirun PATH");
  }
  KOLO_CHECK(environment.find_executable(options.command.front()), "kolorun: program '", options.command.front(),
             "' not found", options.command.front().find('/') == std::string::npos
                                ? " on PATH"
                                : " or not executable");

  // ---- hosts and rank placement
  const Allocation alloc = allocate(options, environment, in_slurm);
  const int nodes = static_cast<int>(alloc.hosts.size());
  const int slots = total_slots(alloc);
  plan.nodes = nodes;
  if (options.ppn > 0) {
    plan.ranks = options.np > 0 ? options.np : options.ppn * nodes;
    KOLO_CHECK(plan.ranks <= static_cast<long>(options.ppn) * nodes, "kolorun: -np ", plan.ranks,
               " does not fit --ppn ", options.ppn, " on ", nodes, " node(s) (", alloc.origin, "): at most ",
               static_cast<long>(options.ppn) * nodes, " ranks; add hosts or raise --ppn");
  } else {
    plan.ranks = options.np > 0 ? options.np : slots;
  }
  const std::vector<int> placed = place_ranks(alloc, plan.ranks, options.ppn);
  for (int i = 0; i < nodes; ++i) {
    if (placed[i] > *alloc.hosts[i].slots && !options.oversubscribe) {
      if (options.ppn > 0) {
        KOLO_FAIL("kolorun: --ppn ", options.ppn, " exceeds the ", *alloc.hosts[i].slots, " slots of ",
                  alloc.hosts[i].name, " (", alloc.origin,
                  "); pass --oversubscribe to run more ranks than slots, or lower --ppn");
      }
      KOLO_FAIL("kolorun: ", plan.ranks, " ranks requested but ", alloc.origin, " offers only ", slots,
                " slot(s); pass --oversubscribe to run more ranks than slots (ranks then share cores), "
                "or add hosts with -H / --hostfile");
    }
  }
  plan.ranks_per_node = *std::max_element(placed.begin(), placed.end());
  plan.notes.push_back(std::to_string(plan.ranks) + " rank(s) on " + std::to_string(nodes) + " node(s) from " +
                       alloc.origin + ", at most " + std::to_string(plan.ranks_per_node) + " per node" +
                       (plan.ranks > slots ? " (oversubscribed)" : ""));

  // ---- threads: every rank gets its share of a node's cores, one of which goes to the communication thread
  const int cores = alloc.cores_per_node;
  const int domains = domains_per_node(options.binding, environment.local);
  // A rank bound to a socket or NUMA domain owns at most that domain's cores, even when it is alone there.
  plan.cores_per_rank = std::max(1, cores / std::max(plan.ranks_per_node, domains));
  std::map<std::string, std::string> set_env;
  if (options.omp_threads > 0) {
    plan.omp_threads = options.omp_threads;
    plan.notes.push_back("OMP_NUM_THREADS=" + std::to_string(plan.omp_threads) + " from --omp-threads");
  } else if (auto inherited = lookup(environment.vars, "OMP_NUM_THREADS")) {
    plan.omp_threads = *positive_var(environment.vars, "OMP_NUM_THREADS");
    plan.notes.push_back("OMP_NUM_THREADS=" + *inherited + " kept from the environment");
  } else {
    plan.omp_threads = std::max(1, plan.cores_per_rank - options.comm_cores);
    plan.notes.push_back("OMP_NUM_THREADS=" + std::to_string(plan.omp_threads) + ": " + std::to_string(cores) +
                         " cores / " + std::to_string(plan.ranks_per_node) + " ranks per node" +
                         (domains > plan.ranks_per_node ? " (one " + std::string(binding_name(options.binding)) +
                                                              " each of " + std::to_string(domains) + ")"
                                                        : "") +
                         " = " + std::to_string(plan.cores_per_rank) + " per rank, minus " +
                         std::to_string(options.comm_cores) + " for the communication thread");
  }
  set_env["OMP_NUM_THREADS"] = std::to_string(plan.omp_threads);

  // ---- binding
  const bool ranks_share_cores = plan.ranks_per_node > cores;
  std::string map_by, bind_to;
  switch (options.binding) {
    case Binding::None:
      map_by = options.ppn > 0 ? "ppr:" + std::to_string(options.ppn) + ":node" : "slot";
      bind_to = "none";
      // Unbound ranks must not pin threads: every rank would pin its thread 0 to the same core.
      set_env["OMP_PROC_BIND"] = "false";
      break;
    case Binding::Core: {
      KOLO_CHECK(!ranks_share_cores, "kolorun: --bind-to core would stack ", plan.ranks_per_node,
                 " ranks on ", cores, " cores per node; use --bind-to none when oversubscribing");
      const std::string pe = ":PE=" + std::to_string(plan.cores_per_rank);
      map_by = (options.ppn > 0 ? "ppr:" + std::to_string(options.ppn) + ":node" : "slot") + pe;
      bind_to = "core";
      set_env["OMP_PROC_BIND"] = "close";
      set_env["OMP_PLACES"] = "cores";
      break;
    }
    case Binding::Socket:
    case Binding::Numa: {
      const std::string object = options.binding == Binding::Socket ? "socket" : "numa";
      if (options.ppn > 0) {
        KOLO_CHECK(options.ppn % domains == 0 || options.ppn < domains, "kolorun: --ppn ", options.ppn,
                   " does not spread evenly over ", domains, " ", object,
                   "s per node; use a multiple of ", domains, ", or --bind-to core / none");
        // ppr:k:socket places k ranks on every socket, so fewer ranks than sockets are placed per node.
        map_by = options.ppn < domains ? "ppr:" + std::to_string(options.ppn) + ":node"
                                       : "ppr:" + std::to_string(options.ppn / domains) + ":" + object;
      } else {
        map_by = object;
      }
      bind_to = object;
      if (plan.ranks_per_node <= domains) {
        set_env["OMP_PROC_BIND"] = "close";
        set_env["OMP_PLACES"] = "cores";
      } else {
        // Ranks sharing a domain would pin their threads onto the same first cores of it.
        set_env["OMP_PROC_BIND"] = "false";
        plan.notes.push_back(std::to_string(plan.ranks_per_node) + " ranks share " + std::to_string(domains) +
                             " " + object + "(s): threads left unpinned inside each " + object);
      }
      break;
    }
  }
  if (!options.map_by.empty()) {
    KOLO_CHECK(options.map_by.find_first_of(" \t\n") == std::string::npos, "kolorun: --map-by '", options.map_by,
               "' contains whitespace");
    map_by = options.map_by;
  }
  plan.notes.push_back(std::string("binding ") + binding_name(options.binding) +
                       (srun ? "" : ": --map-by " + map_by + " --bind-to " + bind_to));

  // ---- environment: what kolorun sets, plus what every rank must see
  std::vector<std::string> forward;
  for (const auto& [name, value] : environment.vars) {
    if (forwarded_by_default(name) && !set_env.count(name)) forward.push_back(name);
  }
  for (const std::string& entry : options.env) {
    const size_t eq = entry.find('=');
    const std::string name = entry.substr(0, eq);
    KOLO_CHECK(is_env_name(name), "kolorun: -x '", entry, "': '", name, "' is not an environment variable name");
    if (eq != std::string::npos) {
      set_env[name] = entry.substr(eq + 1);
    } else {
      KOLO_CHECK(environment.vars.count(name) || set_env.count(name), "kolorun: -x ", name, ": ", name,
                 " is not set in kolorun's environment; use -x ", name, "=VALUE");
      if (!set_env.count(name)) forward.push_back(name);
    }
  }
  for (const auto& [name, value] : set_env) forward.push_back(name);
  std::sort(forward.begin(), forward.end());
  forward.erase(std::unique(forward.begin(), forward.end()), forward.end());
  if (!srun && environment.uid == 0) {
    // Open MPI refuses to start as root without both variables; containers commonly run as root.
    set_env["OMPI_ALLOW_RUN_AS_ROOT"] = "1";
    set_env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1";
    plan.notes.push_back("running as root: OMPI_ALLOW_RUN_AS_ROOT set for mpirun");
  }
  plan.env.assign(set_env.begin(), set_env.end());

  // ---- the command
  plan.argv.push_back(*launcher_path);
  if (srun) {
    plan.argv.push_back("--ntasks=" + std::to_string(plan.ranks));
    if (alloc.pass_to_launcher) {
      std::string nodelist;
      for (const auto& host : alloc.hosts) nodelist += (nodelist.empty() ? "" : ",") + host.name;
      plan.argv.push_back("--nodelist=" + nodelist);
    }
    if (options.ppn > 0) plan.argv.push_back("--ntasks-per-node=" + std::to_string(options.ppn));
    static const char* const cpu_bind[] = {"none", "cores", "sockets", "ldoms"};
    if (options.binding == Binding::Core) plan.argv.push_back("--cpus-per-task=" + std::to_string(plan.cores_per_rank));
    plan.argv.push_back(std::string("--cpu-bind=") + cpu_bind[static_cast<int>(options.binding)]);
    if (options.oversubscribe) plan.argv.push_back("--overcommit");
    // srun exports kolorun's whole environment, the variables set above included.
    plan.argv.push_back("--export=ALL");
  } else {
    plan.argv.insert(plan.argv.end(), {"-np", std::to_string(plan.ranks)});
    if (alloc.pass_to_launcher) plan.argv.insert(plan.argv.end(), {"-H", format_host_list(alloc.hosts)});
    if (options.oversubscribe) plan.argv.push_back("--oversubscribe");
    plan.argv.insert(plan.argv.end(), {"--map-by", map_by, "--bind-to", bind_to});
    for (const std::string& name : forward) plan.argv.insert(plan.argv.end(), {"-x", name});
  }
  plan.argv.insert(plan.argv.end(), options.launcher_args.begin(), options.launcher_args.end());
  plan.argv.insert(plan.argv.end(), options.command.begin(), options.command.end());
  return plan;
}

std::string shell_quote(const std::string& word) {
  const bool safe = !word.empty() && std::all_of(word.begin(), word.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("_-./:=,+%@").find(c) != std::string_view::npos;
  });
  if (safe) return word;
  std::string out = "'";
  for (char c : word) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string format_command(const LaunchPlan& plan) {
  std::ostringstream os;
  const char* sep = "";
  for (const auto& [name, value] : plan.env) {
    os << sep << name << '=' << shell_quote(value);
    sep = " ";
  }
  for (const std::string& arg : plan.argv) {
    os << sep << shell_quote(arg);
    sep = " ";
  }
  return os.str();
}

}  // namespace kolo::launch
