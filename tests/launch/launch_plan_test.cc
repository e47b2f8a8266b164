// kolorun command construction: the exact mpirun/srun lines for the common cases and the refusals.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "core/util/error.h"
#include "launch/launch_plan.h"

namespace kolo::launch {
namespace {

// A 16-core, 2-socket, 2-NUMA-node workstation with mpirun and srun installed, run by a normal user.
LaunchEnvironment workstation() {
  LaunchEnvironment env;
  env.vars = {{"HOME", "/home/u"}, {"PATH", "/usr/bin"}};
  env.uid = 1000;
  env.local = CpuTopology{32, 16, 2, 2};
  env.find_executable = [](const std::string& name) -> std::optional<std::string> {
    static const std::map<std::string, std::string> known = {
        {"mpirun", "/usr/bin/mpirun"}, {"srun", "/usr/bin/srun"}, {"./train", "./train"},
        {"train_resnet", "/opt/kolo/bin/train_resnet"}};
    auto it = known.find(name);
    if (it == known.end()) return std::nullopt;
    return it->second;
  };
  env.read_file = [](const std::string& path) -> std::string {
    if (path == "nodes.txt") return "# rack 1\nnode1 slots=2\nnode2 slots=2 max_slots=4\n";
    if (path == "bare.txt") return "node1\nnode2\n";
    if (path == "broken.txt") return "node1 slots=2\nnode2 slots=lots\n";
    KOLO_FAIL("kolorun: cannot read ", path);
  };
  return env;
}

LaunchOptions run(int np, std::vector<std::string> command = {"./train", "--batch", "32"}) {
  LaunchOptions o;
  o.np = np;
  o.command = std::move(command);
  return o;
}

std::string line(const LaunchOptions& o, const LaunchEnvironment& env = workstation()) {
  return format_command(build_launch_plan(o, env));
}

std::string error_of(const LaunchOptions& o, const LaunchEnvironment& env = workstation()) {
  try {
    build_launch_plan(o, env);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(LaunchPlan, LocalRunSplitsCoresAndKeepsOneForCommunication) {
  const LaunchPlan plan = build_launch_plan(run(4), workstation());
  EXPECT_EQ(plan.ranks, 4);
  EXPECT_EQ(plan.ranks_per_node, 4);
  EXPECT_EQ(plan.cores_per_rank, 4);
  EXPECT_EQ(plan.omp_threads, 3);
  EXPECT_EQ(format_command(plan),
            "OMP_NUM_THREADS=3 OMP_PROC_BIND=false /usr/bin/mpirun -np 4 -H localhost:16 --map-by slot "
            "--bind-to none -x OMP_NUM_THREADS -x OMP_PROC_BIND -x PATH ./train --batch 32");
}

TEST(LaunchPlan, DefaultRankCountIsEverySlot) {
  EXPECT_EQ(build_launch_plan(run(0), workstation()).ranks, 16);
}

TEST(LaunchPlan, OneRankPerCoreLeavesOneThread) {
  EXPECT_EQ(build_launch_plan(run(16), workstation()).omp_threads, 1);
  LaunchOptions o = run(2);
  o.comm_cores = 0;
  EXPECT_EQ(build_launch_plan(o, workstation()).omp_threads, 8);
}

TEST(LaunchPlan, ThreadCountFromOptionOrEnvironmentWins) {
  LaunchOptions o = run(2);
  o.omp_threads = 5;
  EXPECT_EQ(build_launch_plan(o, workstation()).omp_threads, 5);
  auto env = workstation();
  env.vars["OMP_NUM_THREADS"] = "6";
  EXPECT_EQ(build_launch_plan(run(2), env).omp_threads, 6);
  env.vars["OMP_NUM_THREADS"] = "six";
  EXPECT_NE(error_of(run(2), env).find("OMP_NUM_THREADS='six' is not a positive integer"), std::string::npos);
}

TEST(LaunchPlan, RootGetsOpenMpiPermissionVariables) {
  auto env = workstation();
  env.uid = 0;
  const std::string cmd = line(run(2), env);
  EXPECT_EQ(cmd.rfind("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=7 ", 0), 0u) << cmd;
  // They are for mpirun itself, not forwarded to ranks.
  EXPECT_EQ(cmd.find("-x OMPI_ALLOW"), std::string::npos);
}

TEST(LaunchPlan, MoreRanksThanSlotsNeedsOversubscribe) {
  const std::string err = error_of(run(32));
  EXPECT_NE(err.find("32 ranks requested but this machine (16 cores) offers only 16 slot(s)"), std::string::npos)
      << err;
  EXPECT_NE(err.find("--oversubscribe"), std::string::npos);
  LaunchOptions o = run(32);
  o.oversubscribe = true;
  const LaunchPlan plan = build_launch_plan(o, workstation());
  EXPECT_EQ(plan.omp_threads, 1);
  EXPECT_NE(format_command(plan).find("-np 32 -H localhost:16 --oversubscribe --map-by slot"), std::string::npos);
}

TEST(LaunchPlan, HostListSpreadsRanksAndSizesThreadsPerNode) {
  LaunchOptions o = run(4);
  o.host_list = "node1:2,node2:2";
  const LaunchPlan plan = build_launch_plan(o, workstation());
  EXPECT_EQ(plan.nodes, 2);
  EXPECT_EQ(plan.ranks_per_node, 2);
  EXPECT_EQ(plan.omp_threads, 7);
  EXPECT_NE(format_command(plan).find("-np 4 -H node1:2,node2:2 --map-by slot"), std::string::npos);
  o.np = 5;
  EXPECT_NE(error_of(o).find("offers only 4 slot(s)"), std::string::npos);
}

TEST(LaunchPlan, HostfileIsValidatedAndPassedWithExplicitSlots) {
  LaunchOptions o = run(0);
  o.hostfile = "nodes.txt";
  EXPECT_NE(line(o).find("-np 4 -H node1:2,node2:2 "), std::string::npos);
  o.hostfile = "bare.txt";
  EXPECT_NE(line(o).find("-np 32 -H node1:16,node2:16 "), std::string::npos);
  o.hostfile = "broken.txt";
  EXPECT_NE(error_of(o).find("broken.txt:2: slots 'lots' is not a positive integer"), std::string::npos);
  o.hostfile = "missing.txt";
  EXPECT_NE(error_of(o).find("cannot read missing.txt"), std::string::npos);
  o.host_list = "a:1";
  EXPECT_NE(error_of(o).find("not both"), std::string::npos);
}

TEST(LaunchPlan, ProcessesPerNodeUsePprMapping) {
  LaunchOptions o = run(0);
  o.host_list = "node1:8,node2:8";
  o.ppn = 2;
  const LaunchPlan plan = build_launch_plan(o, workstation());
  EXPECT_EQ(plan.ranks, 4);
  EXPECT_EQ(plan.omp_threads, 7);
  EXPECT_NE(format_command(plan).find("--map-by ppr:2:node --bind-to none"), std::string::npos);
  o.np = 5;
  EXPECT_NE(error_of(o).find("does not fit --ppn 2 on 2 node(s)"), std::string::npos);
  o.np = 0;
  o.ppn = 9;
  EXPECT_NE(error_of(o).find("--ppn 9 exceeds the 8 slots of node1"), std::string::npos);
}

TEST(LaunchPlan, SocketPresetPinsOneRankPerSocket) {
  LaunchOptions o = run(2);
  o.binding = Binding::Socket;
  const std::string cmd = line(o);
  EXPECT_NE(cmd.find("OMP_NUM_THREADS=7 OMP_PLACES=cores OMP_PROC_BIND=close "), std::string::npos) << cmd;
  EXPECT_NE(cmd.find("--map-by socket --bind-to socket"), std::string::npos);
  // Two ranks per socket: threads of both would pin onto the socket's first cores, so they stay unpinned.
  o.np = 4;
  const std::string shared = line(o);
  EXPECT_NE(shared.find("OMP_PROC_BIND=false"), std::string::npos) << shared;
  EXPECT_EQ(shared.find("OMP_PLACES"), std::string::npos);
}

TEST(LaunchPlan, SocketPresetWithPpnMapsPerSocket) {
  LaunchOptions o = run(0);
  o.host_list = "node1:16,node2:16";
  o.ppn = 4;
  o.binding = Binding::Socket;
  EXPECT_NE(line(o).find("--map-by ppr:2:socket --bind-to socket"), std::string::npos);
  o.ppn = 3;
  EXPECT_NE(error_of(o).find("--ppn 3 does not spread evenly over 2 sockets"), std::string::npos);
}

TEST(LaunchPlan, RankAloneOnASocketOnlyGetsThatSocketsCores) {
  LaunchOptions o = run(1);
  o.binding = Binding::Socket;
  EXPECT_EQ(build_launch_plan(o, workstation()).omp_threads, 7);  // 16 cores / 2 sockets - 1
  o.binding = Binding::None;
  EXPECT_EQ(build_launch_plan(o, workstation()).omp_threads, 15);
  o = run(0);
  o.host_list = "node1:16,node2:16";
  o.ppn = 1;
  o.binding = Binding::Socket;
  EXPECT_NE(line(o).find("--map-by ppr:1:node --bind-to socket"), std::string::npos) << line(o);
}

TEST(LaunchPlan, NumaPresetBindsToNumaDomains) {
  LaunchOptions o = run(2);
  o.binding = Binding::Numa;
  EXPECT_NE(line(o).find("--map-by numa --bind-to numa"), std::string::npos);
}

TEST(LaunchPlan, CorePresetGivesEachRankItsOwnCores) {
  LaunchOptions o = run(4);
  o.binding = Binding::Core;
  const std::string cmd = line(o);
  EXPECT_NE(cmd.find("--map-by slot:PE=4 --bind-to core"), std::string::npos) << cmd;
  EXPECT_NE(cmd.find("OMP_PLACES=cores OMP_PROC_BIND=close"), std::string::npos);
  o.np = 32;
  o.oversubscribe = true;
  EXPECT_NE(error_of(o).find("--bind-to core would stack 32 ranks on 16 cores"), std::string::npos);
}

TEST(LaunchPlan, ExplicitMapByReplacesPreset) {
  LaunchOptions o = run(2);
  o.map_by = "ppr:1:socket:PE=8";
  EXPECT_NE(line(o).find("--map-by ppr:1:socket:PE=8 --bind-to none"), std::string::npos);
}

TEST(LaunchPlan, EnvironmentPassthrough) {
  auto env = workstation();
  env.vars["KOLO_FUSION_THRESHOLD"] = "1048576";
  env.vars["NCCL_DEBUG"] = "INFO";
  env.vars["SECRET_TOKEN"] = "x";
  LaunchOptions o = run(2);
  o.env = {"HOME", "DATA_DIR=/data/with space"};
  const std::string cmd = line(o, env);
  EXPECT_NE(cmd.find("DATA_DIR='/data/with space' OMP_NUM_THREADS"), std::string::npos) << cmd;
  for (const char* name : {"DATA_DIR", "HOME", "KOLO_FUSION_THRESHOLD", "NCCL_DEBUG", "PATH"}) {
    EXPECT_NE(cmd.find(std::string("-x ") + name + " "), std::string::npos) << name << ": " << cmd;
  }
  EXPECT_EQ(cmd.find("SECRET_TOKEN"), std::string::npos);
  o.env = {"NOT_SET_ANYWHERE"};
  EXPECT_NE(error_of(o, env).find("NOT_SET_ANYWHERE is not set in kolorun's environment"), std::string::npos);
  o.env = {"1BAD=2"};
  EXPECT_NE(error_of(o, env).find("is not an environment variable name"), std::string::npos);
}

TEST(LaunchPlan, LauncherArgumentsGoBeforeTheProgram) {
  LaunchOptions o = run(2);
  o.launcher_args = {"--mca", "btl", "self,vader"};
  EXPECT_NE(line(o).find("--mca btl self,vader ./train --batch 32"), std::string::npos);
}

TEST(LaunchPlan, MissingLauncherOrProgramIsClear) {
  LaunchOptions o = run(2, {"train_transformer"});
  EXPECT_NE(error_of(o).find("program 'train_transformer' not found on PATH"), std::string::npos);
  o = run(2, {"./missing"});
  EXPECT_NE(error_of(o).find("program './missing' not found or not executable"), std::string::npos);
  o = run(2);
  o.mpirun = "/opt/mpi/bin/mpirun";
  EXPECT_NE(error_of(o).find("mpirun launcher '/opt/mpi/bin/mpirun' not found"), std::string::npos);
  o = run(2);
  o.command.clear();
  EXPECT_NE(error_of(o).find("no program to run"), std::string::npos);
}

LaunchEnvironment slurm_job() {
  auto env = workstation();
  env.vars["SLURM_JOB_ID"] = "4242";
  env.vars["SLURM_JOB_NUM_NODES"] = "2";
  env.vars["SLURM_NTASKS"] = "8";
  env.vars["SLURM_CPUS_ON_NODE"] = "32";
  env.uid = 0;
  return env;
}

TEST(LaunchPlan, InsideSlurmUsesSrunWithTheAllocation) {
  const LaunchPlan plan = build_launch_plan(run(0, {"train_resnet"}), slurm_job());
  EXPECT_EQ(plan.launcher, Launcher::Srun);
  EXPECT_EQ(plan.ranks, 8);
  EXPECT_EQ(plan.ranks_per_node, 4);
  EXPECT_EQ(plan.omp_threads, 7);  // 32 CPUs on the node / 4 tasks - 1
  EXPECT_EQ(format_command(plan),
            "OMP_NUM_THREADS=7 OMP_PROC_BIND=false /usr/bin/srun --ntasks=8 --cpu-bind=none --export=ALL "
            "train_resnet");
}

TEST(LaunchPlan, SrunPresetsAndLimits) {
  LaunchOptions o = run(4, {"train_resnet"});
  o.binding = Binding::Core;
  o.ppn = 2;
  EXPECT_NE(line(o, slurm_job()).find("srun --ntasks=4 --ntasks-per-node=2 --cpus-per-task=16 --cpu-bind=cores"),
            std::string::npos);
  o = run(16, {"train_resnet"});
  EXPECT_NE(error_of(o, slurm_job()).find("offers only 8 slot(s)"), std::string::npos);
  EXPECT_NE(error_of(o, slurm_job()).find("Slurm job 4242"), std::string::npos);
  o.oversubscribe = true;
  EXPECT_NE(line(o, slurm_job()).find("--overcommit"), std::string::npos);
}

TEST(LaunchPlan, MpirunCanBeForcedInsideSlurm) {
  LaunchOptions o = run(8, {"train_resnet"});
  o.launcher = Launcher::Mpirun;
  const std::string cmd = line(o, slurm_job());
  // mpirun reads the allocation itself: no -H.
  EXPECT_NE(cmd.find("/usr/bin/mpirun -np 8 --map-by slot"), std::string::npos) << cmd;
}

TEST(LaunchPlan, RejectsNonsenseCounts) {
  LaunchOptions o = run(-1);
  EXPECT_THROW(build_launch_plan(o, workstation()), Error);
  o = run(2);
  o.cores_per_node = -4;
  EXPECT_THROW(build_launch_plan(o, workstation()), Error);
  o = run(2);
  o.comm_cores = -1;
  EXPECT_THROW(build_launch_plan(o, workstation()), Error);
  o = run(2);
  o.map_by = "slot --evil";
  EXPECT_THROW(build_launch_plan(o, workstation()), Error);
}

TEST(ShellQuote, QuotesOnlyWhatTheShellWouldSplit) {
  EXPECT_EQ(shell_quote("--map-by"), "--map-by");
  EXPECT_EQ(shell_quote("ppr:2:socket:PE=4"), "ppr:2:socket:PE=4");
  EXPECT_EQ(shell_quote("a b"), "'a b'");
  EXPECT_EQ(shell_quote("it's"), "'it'\\''s'");
  EXPECT_EQ(shell_quote(""), "''");
  EXPECT_EQ(shell_quote("$HOME"), "'$HOME'");
}

}  // namespace
}  // namespace kolo::launch
