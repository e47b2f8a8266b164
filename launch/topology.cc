// CPU topology detection for kolorun, split into a pure /proc/cpuinfo parser and the reads of this machine.
#include "launch/topology.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <utility>

#include "core/util/error.h"

namespace kolo::launch {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

}  // namespace

CpuTopology parse_cpuinfo(std::string_view text) {
  int processors = 0;
  std::set<std::pair<std::string, std::string>> cores;
  std::set<std::string> sockets;
  // Fields of the processor block being read; a block ends at the next "processor" line or end of text.
  std::string physical_id, core_id;
  bool in_block = false;
  auto finish_block = [&] {
    if (!in_block) return;
    if (!physical_id.empty()) sockets.insert(physical_id);
    if (!core_id.empty()) cores.insert({physical_id, core_id});
    physical_id.clear();
    core_id.clear();
  };

  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(start, end - start);
    start = end + 1;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view key = trim(line.substr(0, colon));
    const std::string value(trim(line.substr(colon + 1)));
    if (key == "processor") {
      finish_block();
      in_block = true;
      ++processors;
    } else if (key == "physical id") {
      physical_id = value;
    } else if (key == "core id") {
      core_id = value;
    }
  }
  finish_block();
  KOLO_CHECK(processors > 0, "kolorun: /proc/cpuinfo lists no processor");

  CpuTopology topo;
  topo.logical_cpus = processors;
  // Without core ids every processor is its own core: counting fewer would under-use the machine.
  topo.cores = cores.empty() ? processors : static_cast<int>(cores.size());
  topo.sockets = std::max<int>(1, static_cast<int>(sockets.size()));
  return topo;
}

int parse_cgroup_cpu_max(std::string_view text) {
  std::istringstream in{std::string(text)};
  std::string quota;
  double period = 0;
  if (!(in >> quota >> period) || quota == "max" || period <= 0) return 0;
  try {
    const double q = std::stod(quota);
    return q > 0 ? static_cast<int>(std::ceil(q / period)) : 0;
  } catch (const std::exception&) {
    return 0;
  }
}

CpuTopology limited_to(CpuTopology topo, int cpus) {
  if (cpus <= 0 || cpus >= topo.logical_cpus) return topo;
  topo.cores = std::max(1, static_cast<int>(static_cast<int64_t>(cpus) * topo.cores / topo.logical_cpus));
  topo.logical_cpus = cpus;
  return topo;
}

namespace {

// The CPUs this process may run on: its affinity mask, and the cgroup v2 quota of its cgroup (0: no limit).
int usable_cpus() {
  int cpus = 0;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = CPU_COUNT(&set);
  std::ifstream cgroup("/proc/self/cgroup");
  std::string line, path = "/";
  while (std::getline(cgroup, line))
    if (line.rfind("0::", 0) == 0) path = line.substr(3);
  std::ifstream max_file("/sys/fs/cgroup" + (path == "/" ? std::string() : path) + "/cpu.max");
  std::ostringstream text;
  if (max_file) text << max_file.rdbuf();
  const int quota = parse_cgroup_cpu_max(text.str());
  if (quota > 0) cpus = cpus > 0 ? std::min(cpus, quota) : quota;
  return cpus;
}

}  // namespace

CpuTopology detect_local_topology() {
  CpuTopology topo;
  std::ifstream in("/proc/cpuinfo");
  std::ostringstream text;
  if (in) text << in.rdbuf();
  try {
    topo = parse_cpuinfo(text.str());
  } catch (const Error&) {
    const long online = sysconf(_SC_NPROCESSORS_ONLN);
    topo.logical_cpus = topo.cores = online > 0 ? static_cast<int>(online) : 1;
  }
  std::error_code ec;
  int nodes = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/sys/devices/system/node", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 4 && name.rfind("node", 0) == 0 &&
        std::all_of(name.begin() + 4, name.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
      ++nodes;
    }
  }
  topo.numa_nodes = std::max(1, nodes);
  return limited_to(topo, usable_cpus());
}

}  // namespace kolo::launch
