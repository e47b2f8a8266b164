// Host lists for kolorun: parsing Open MPI hostfiles ("node1 slots=4") and -H lists ("node1:4,node2").
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kolo::launch {

// One host and how many ranks it may run. slots is empty when the source did not say: a hostfile line
// without slots= means "as many as the node has cores" to Open MPI, which kolorun resolves later
// (resolve_slots) from the detected or --cores-per-node count.
struct HostSlots {
  std::string name;
  std::optional<int> slots;

  bool operator==(const HostSlots&) const = default;
};

// Largest slot count accepted on one host; bigger values are typos, and capping keeps sums in int.
inline constexpr int kMaxSlotsPerHost = 1 << 16;

// Parses an Open MPI hostfile. Accepted per line: `host`, `host slots=N`, `host slots=N max_slots=M`,
// `host:N` (the Horovod/MPICH form); `#` starts a comment; blank lines are skipped. max_slots is checked
// (>= slots) and otherwise ignored: kolorun's only oversubscription control is --oversubscribe. A host listed twice gets
// the sum of its slots, as mpirun does. Any other content is a kolo::Error naming `source` and the line
// number. Never crashes on arbitrary bytes (fuzzed in tests/launch).
std::vector<HostSlots> parse_hostfile(std::string_view text, std::string_view source);

// Parses a -H list: comma-separated `host` or `host:N`. A host without a count gets 1 slot, like mpirun -H.
std::vector<HostSlots> parse_host_list(std::string_view text);

// Fills in missing slot counts with `default_slots`.
std::vector<HostSlots> resolve_slots(std::vector<HostSlots> hosts, int default_slots);

// "a:2,b:4", the form mpirun -H and srun --nodelist consumers expect (requires resolved slots).
std::string format_host_list(const std::vector<HostSlots>& hosts);

// True for names mpirun treats as this machine.
bool is_local_host(std::string_view name);

}  // namespace kolo::launch
