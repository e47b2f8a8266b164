// kolorun's option table (cxxopts) and the split between kolorun's options and the launched program.
#include "launch/options.h"

#include <cxxopts.hpp>

#include <algorithm>
#include <sstream>

#include "core/util/error.h"

namespace kolo::launch {
namespace {

cxxopts::Options make_options() {
  cxxopts::Options opts("kolorun", "Start a kolo program on N ranks through mpirun (or srun inside Slurm).");
  opts.custom_help("[options] program [args...]");
  // clang-format off
  opts.add_options("Placement")
    ("n,np", "number of ranks (default: every slot, or --ppn x nodes)", cxxopts::value<int>()->default_value("0"))
    ("H,hosts", "hosts as host:slots,host:slots (a host without :slots gets 1)", cxxopts::value<std::string>())
    ("hostfile", "Open MPI hostfile: 'host slots=N' or 'host:N' per line", cxxopts::value<std::string>())
    ("ppn", "processes per node", cxxopts::value<int>()->default_value("0"))
    ("oversubscribe", "allow more ranks than slots")
    ("bind-to", "binding preset: none, core, socket, numa", cxxopts::value<std::string>()->default_value("none"))
    ("map-by", "explicit mpirun --map-by value, replacing the preset's", cxxopts::value<std::string>());
  opts.add_options("Threads")
    ("omp-threads", "OMP_NUM_THREADS per rank (default: cores per rank minus --comm-cores)",
     cxxopts::value<int>()->default_value("0"))
    ("cores-per-node", "cores of each node (default: detected on this machine or from Slurm)",
     cxxopts::value<int>()->default_value("0"))
    ("comm-cores", "cores per rank kept free for kolo's communication thread",
     cxxopts::value<int>()->default_value("1"));
  opts.add_options("Launcher")
    ("launcher", "auto (srun when SLURM_JOB_ID is set), mpirun or srun",
     cxxopts::value<std::string>()->default_value("auto"))
    ("mpirun", "mpirun program", cxxopts::value<std::string>()->default_value("mpirun"))
    ("srun", "srun program", cxxopts::value<std::string>()->default_value("srun"))
    ("x,env", "forward NAME, or set and forward NAME=VALUE, to every rank (repeatable)",
     cxxopts::value<std::string>())
    ("launcher-args", "extra arguments for mpirun/srun, split on spaces (repeatable)",
     cxxopts::value<std::string>())
    ("dry-run", "print the command instead of running it")
    ("v,verbose", "print the placement and thread decisions before running")
    ("h,help", "show this help");
  // clang-format on
  return opts;
}

// Options that take no value; every other option consumes the next word unless written --opt=value.
bool is_flag(const std::string& arg) {
  static const char* const flags[] = {"--oversubscribe", "--dry-run", "-v", "--verbose", "-h", "--help"};
  return std::find(std::begin(flags), std::end(flags), arg) != std::end(flags);
}

std::vector<std::string> split_spaces(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> words;
  for (std::string word; in >> word;) words.push_back(word);
  return words;
}

Binding parse_binding(const std::string& name) {
  if (name == "none") return Binding::None;
  if (name == "core" || name == "cores") return Binding::Core;
  if (name == "socket" || name == "sockets") return Binding::Socket;
  if (name == "numa") return Binding::Numa;
  KOLO_FAIL("kolorun: --bind-to '", name, "' is not a preset; use none, core, socket or numa");
}

Launcher parse_launcher(const std::string& name) {
  if (name == "auto") return Launcher::Auto;
  if (name == "mpirun") return Launcher::Mpirun;
  if (name == "srun") return Launcher::Srun;
  KOLO_FAIL("kolorun: --launcher '", name, "' is unknown; use auto, mpirun or srun");
}

}  // namespace

CommandLine parse_command_line(const std::vector<std::string>& args) {
  CommandLine line;
  LaunchOptions& o = line.options;
  // Words for cxxopts, always as "--name value" pairs or lone flags. -x and --launcher-args are collected
  // here instead because cxxopts would split their values on commas ("--mca btl self,vader").
  std::vector<std::string> own;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    std::string name = args[i];
    if (name == "--") {
      ++i;
      break;
    }
    if (name.size() < 2 || name.front() != '-') break;
    if (name == "-np") name = "--np";
    KOLO_CHECK(name[1] == '-' || name.size() == 2, "kolorun: unknown option '", name,
               "' (short options take their value apart: '-n 4', not '-n4')");
    if (is_flag(name)) {
      own.push_back(name);
      continue;
    }
    std::string value;
    if (const size_t eq = name.find('='); name[1] == '-' && eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else {
      KOLO_CHECK(i + 1 < args.size(), "kolorun: option ", name, " needs a value");
      value = args[++i];
    }
    if (name == "-x" || name == "--env") {
      o.env.push_back(value);
    } else if (name == "--launcher-args") {
      const auto words = split_spaces(value);
      o.launcher_args.insert(o.launcher_args.end(), words.begin(), words.end());
    } else {
      own.insert(own.end(), {name, value});
    }
  }
  o.command.assign(args.begin() + static_cast<std::ptrdiff_t>(i), args.end());

  auto opts = make_options();
  std::vector<const char*> argv{"kolorun"};
  for (const auto& arg : own) argv.push_back(arg.c_str());
  cxxopts::ParseResult result;
  try {
    result = opts.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const cxxopts::exceptions::exception& e) {
    KOLO_FAIL("kolorun: ", e.what(), " (see kolorun --help)");
  }
  KOLO_CHECK(result.unmatched().empty(), "kolorun: unexpected argument '", result.unmatched().front(), "'");

  line.help = result.count("help") > 0;
  line.dry_run = result.count("dry-run") > 0;
  line.verbose = result.count("verbose") > 0;
  o.np = result["np"].as<int>();
  if (result.count("hosts")) o.host_list = result["hosts"].as<std::string>();
  if (result.count("hostfile")) o.hostfile = result["hostfile"].as<std::string>();
  o.ppn = result["ppn"].as<int>();
  o.oversubscribe = result.count("oversubscribe") > 0;
  o.binding = parse_binding(result["bind-to"].as<std::string>());
  if (result.count("map-by")) o.map_by = result["map-by"].as<std::string>();
  o.omp_threads = result["omp-threads"].as<int>();
  o.cores_per_node = result["cores-per-node"].as<int>();
  o.comm_cores = result["comm-cores"].as<int>();
  o.launcher = parse_launcher(result["launcher"].as<std::string>());
  o.mpirun = result["mpirun"].as<std::string>();
  o.srun = result["srun"].as<std::string>();
  return line;
}

std::string usage() { return make_options().help(); }

}  // namespace kolo::launch
