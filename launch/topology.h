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

// Reads this machine: /proc/cpuinfo, falling back to sysconf(_SC_NPROCESSORS_ONLN) when it is unreadable;
// NUMA nodes from /sys/devices/system/node. Never throws.
CpuTopology detect_local_topology();

}  // namespace kolo::launch
