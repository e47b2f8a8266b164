// What kolorun knows about a node's CPUs: logical CPUs, physical cores, sockets, NUMA nodes.
#pragma once

#include <string_view>

namespace kolo::launch {

struct CpuTopology {
  int logical_cpus = 1;
  int cores = 1;  // physical cores; what Open MPI counts as slots and what OMP threads should map to
  int sockets = 1;
  int numa_nodes = 1;
};

// Parses /proc/cpuinfo text. Cores are distinct (physical id, core id) pairs and sockets distinct physical
// ids; where the kernel omits those fields (some VMs, ARM) every processor counts as one core on one socket.
// Text with no "processor" line is a kolo::Error.
CpuTopology parse_cpuinfo(std::string_view text);

// Parses a cgroup v2 cpu.max ("max 100000" or "<quota> <period>"): the CPUs the quota amounts to, rounded up;
// 0 when unlimited or unreadable.
int parse_cgroup_cpu_max(std::string_view text);

// `topo` restricted to `cpus` usable logical CPUs (an affinity mask or a CPU quota, as in a container): fewer
// logical CPUs, and cores in the machine's proportion of cores to logical CPUs (at least one). Unchanged when
// `cpus` is not below the machine's count.
CpuTopology limited_to(CpuTopology topo, int cpus);

// Reads this machine: /proc/cpuinfo, falling back to sysconf(_SC_NPROCESSORS_ONLN) when it is unreadable;
// NUMA nodes from /sys/devices/system/node; then limited to this process's affinity mask and its cgroup's CPU
// quota (docker --cpuset-cpus / --cpus, Kubernetes limits, taskset), so ranks and threads are planned for the
// CPUs the job may use. Never throws.
CpuTopology detect_local_topology();

}  // namespace kolo::launch
