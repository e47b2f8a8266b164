// /proc/cpuinfo parsing: cores are (socket, core id) pairs, hyperthreads are not cores; the plan is limited to
// the CPUs an affinity mask or a cgroup quota leaves.
#include <gtest/gtest.h>

#include <string>

#include "core/util/error.h"
#include "launch/topology.h"

namespace kolo::launch {
namespace {

std::string processor(int index, int socket, int core) {
  return "processor\t: " + std::to_string(index) + "\nmodel name\t: Xeon\nphysical id\t: " + std::to_string(socket) +
         "\ncore id\t\t: " + std::to_string(core) + "\n\n";
}

TEST(Topology, TwoSocketsTwoCoresTwoThreads) {
  std::string text;
  int index = 0;
  for (int thread = 0; thread < 2; ++thread) {
    for (int socket = 0; socket < 2; ++socket) {
      for (int core = 0; core < 2; ++core) text += processor(index++, socket, core);
    }
  }
  const CpuTopology topo = parse_cpuinfo(text);
  EXPECT_EQ(topo.logical_cpus, 8);
  EXPECT_EQ(topo.cores, 4);
  EXPECT_EQ(topo.sockets, 2);
}

TEST(Topology, SameCoreIdOnTwoSocketsIsTwoCores) {
  const CpuTopology topo = parse_cpuinfo(processor(0, 0, 0) + processor(1, 1, 0));
  EXPECT_EQ(topo.cores, 2);
  EXPECT_EQ(topo.sockets, 2);
}

TEST(Topology, WithoutCoreIdsEveryProcessorIsACore) {
  const CpuTopology topo = parse_cpuinfo("processor : 0\nBogoMIPS : 50\n\nprocessor : 1\nBogoMIPS : 50\n");
  EXPECT_EQ(topo.logical_cpus, 2);
  EXPECT_EQ(topo.cores, 2);
  EXPECT_EQ(topo.sockets, 1);
}

TEST(Topology, TextWithoutProcessorsIsAnError) {
  EXPECT_THROW(parse_cpuinfo(""), Error);
  EXPECT_THROW(parse_cpuinfo("garbage\nmore: garbage\n"), Error);
}

TEST(Topology, CgroupCpuMaxIsRoundedUpToCpus) {
  EXPECT_EQ(parse_cgroup_cpu_max("max 100000\n"), 0);
  EXPECT_EQ(parse_cgroup_cpu_max("200000 100000\n"), 2);
  EXPECT_EQ(parse_cgroup_cpu_max("150000 100000\n"), 2);  // --cpus 1.5 may still use two CPUs part-time
  EXPECT_EQ(parse_cgroup_cpu_max(""), 0);
  EXPECT_EQ(parse_cgroup_cpu_max("garbage"), 0);
}

TEST(Topology, LimitedToAnAffinityMaskOrQuota) {
  const CpuTopology machine{.logical_cpus = 16, .cores = 8, .sockets = 2, .numa_nodes = 2};
  const CpuTopology four = limited_to(machine, 4);  // taskset -c 0-3 on a 2-way SMT machine
  EXPECT_EQ(four.logical_cpus, 4);
  EXPECT_EQ(four.cores, 2);
  EXPECT_EQ(limited_to(machine, 1).cores, 1);
  EXPECT_EQ(limited_to(machine, 0).cores, 8);   // unknown: the machine
  EXPECT_EQ(limited_to(machine, 32).cores, 8);  // not below the machine's count
}

TEST(Topology, ThisMachineHasAtLeastOneCore) {
  const CpuTopology topo = detect_local_topology();
  EXPECT_GE(topo.cores, 1);
  EXPECT_GE(topo.logical_cpus, topo.cores);
  EXPECT_GE(topo.sockets, 1);
  EXPECT_GE(topo.numa_nodes, 1);
}

}  // namespace
}  // namespace kolo::launch
