// /proc/cpuinfo parsing: cores are (socket, core id) pairs, hyperthreads are not cores.
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

TEST(Topology, ThisMachineHasAtLeastOneCore) {
  const CpuTopology topo = detect_local_topology();
  EXPECT_GE(topo.cores, 1);
  EXPECT_GE(topo.logical_cpus, topo.cores);
  EXPECT_GE(topo.sockets, 1);
  EXPECT_GE(topo.numa_nodes, 1);
}

}  // namespace
}  // namespace kolo::launch
