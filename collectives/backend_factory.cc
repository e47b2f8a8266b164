// Backend selection and node topology (real nodes from shared-memory domains, or fake ones for testing).
#include "collectives/backend_factory.h"

#include <initializer_list>
#include <utility>
#include <vector>

#include "collectives/loopback/loopback_backend.h"
#include "core/util/error.h"
#ifdef KOLO_WITH_MPI
#include "collectives/mpi/mpi_backend.h"
#include "collectives/mpi/shm_control_plane.h"
#endif
#include "collectives/device_collectives.h"
#ifdef KOLO_WITH_NCCL
#include "collectives/nccl/nccl_backend.h"
#include "collectives/nccl/nccl_device_collectives.h"
#endif

namespace kolo {

std::vector<std::string> backend_fallback_order(const std::string& requested, bool mpi_built, bool mpi_launched) {
  if (requested == "mpi") {
    KOLO_CHECK(mpi_built, "KOLO_BACKEND=mpi but kolo was built without MPI (KOLO_WITH_MPI=OFF)");
    return {"mpi"};
  }
  if (requested == "loopback") return {"loopback"};
  KOLO_CHECK(requested == "auto", "unknown backend '", requested, "' (auto, mpi, loopback)");
  if (mpi_built && mpi_launched) return {"mpi", "loopback"};
  return {"loopback"};
}

namespace {

void build_topology(Backends& b, const std::vector<int>& node_of) {
  const int rank = b.world->rank();
  const int size = b.world->size();
  std::vector<int> local_index(size, 0);
  std::vector<int> seen_per_node(size, 0);
  for (int r = 0; r < size; ++r) local_index[r] = seen_per_node[node_of[r]]++;
  b.local_rank = local_index[rank];
  b.local_size = seen_per_node[node_of[rank]];
  b.local = b.world->split(node_of[rank]);
  b.cross = b.world->split(b.local_rank);
  b.cross_rank = b.cross->rank();
  b.cross_size = b.cross->size();
  // Every rank holds the whole map, so every rank reaches the same verdict without communicating.
  for (int r = 0; r < size; ++r)
    if (seen_per_node[node_of[r]] != seen_per_node[node_of[0]]) b.uniform_nodes = false;
}

// Knobs that shape which collectives each rank issues (fusion, buckets, chunks, transports, hierarchy, cache
// slots, NCCL streams). Ranks that differ in one pair different calls and hang or corrupt data, so they are
// checked before the collectives they shape (one small allreduce), and every rank fails with the same message
// when one differs (launchers pass the environment to every rank only when told to, e.g. mpirun -x).
[[maybe_unused]] void check_knobs_agree(Backend& world, std::initializer_list<std::pair<const char*, int64_t>> knobs) {
  std::vector<int64_t> v;  // each knob's value and its negation: one max gives the largest and the smallest
  for (const auto& [name, value] : knobs) {
    v.push_back(value);
    v.push_back(-value);
  }
  world.allreduce(v.data(), v.data(), static_cast<int64_t>(v.size()), DType::I64, ReduceOp::Max, nullptr);
  size_t k = 0;
  for (const auto& [name, value] : knobs) {
    KOLO_CHECK(v[2 * k] == -v[2 * k + 1], "kolo: ", name, " differs between ranks (from ", -v[2 * k + 1], " to ",
               v[2 * k], "); it must be equal on every rank");
    ++k;
  }
}

}  // namespace

Backends make_backends(const Config& config) {
#ifdef KOLO_WITH_MPI
  const bool mpi_built = true;
  const bool launched = mpi_launch_detected();
#else
  const bool mpi_built = false;
  const bool launched = false;
#endif
  Backends b;
  const auto order = backend_fallback_order(config.backend, mpi_built, launched);
  b.name = order.front();
  std::vector<int> node_of;
#ifdef KOLO_WITH_MPI
  if (b.name == "mpi") {
    auto mpi = std::make_unique<MpiBackend>(config.shm_allreduce);
    node_of = mpi->node_ids();
    b.world = std::move(mpi);
    check_knobs_agree(*b.world, {{"KOLO_FUSION_THRESHOLD", config.fusion_threshold},
                                 {"KOLO_DEVICE_BUCKET_BYTES", config.device_bucket_bytes},
                                 {"KOLO_CACHE_CAPACITY", config.cache_capacity},
                                 {"KOLO_ALLREDUCE_CHUNK_BYTES", config.allreduce_chunk_bytes},
                                 {"KOLO_SHM_ALLREDUCE", config.shm_allreduce},
                                 {"KOLO_SHM_CONTROL_PLANE", config.shm_control_plane},
                                 {"KOLO_HIERARCHICAL_ALLREDUCE", config.hierarchical_allreduce},
                                 {"KOLO_FAKE_LOCAL_SIZE", config.fake_local_size}});
    // Shared-memory mailboxes when every rank is on this node (a collective decision, like the MPI setup).
    if (config.shm_control_plane) b.control = ShmControlPlane::create();
    if (!b.control) b.control = std::make_unique<MpiControlPlane>();
  }
#endif
  if (b.name == "loopback") {
    b.world = std::make_unique<LoopbackBackend>();
    b.control = std::make_unique<LoopbackControlPlane>();
    node_of = {0};
  }
  const int size = b.world->size();
  // Fake nodes of KOLO_FAKE_LOCAL_SIZE ranks; the last one holds fewer when it does not divide the ranks.
  if (config.fake_local_size > 0)
    for (int r = 0; r < size; ++r) node_of[r] = r / config.fake_local_size;
  build_topology(b, node_of);
  return b;
}

std::vector<std::string> device_backend_fallback_order(bool nccl_built, int visible_devices) {
  if (nccl_built && visible_devices > 0) return {"nccl"};
  return {};
}

DeviceBackends make_device_backends(const Backends& host) {
  DeviceBackends d;
#ifdef KOLO_WITH_NCCL
  // Every rank must take the same branch: agree on the smallest device count before any NCCL call, and on
  // the number of streams (each a communicator split off the first, then picked round-robin per call).
  int64_t visible = visible_cuda_devices();
  host.world->allreduce(&visible, &visible, 1, DType::I64, ReduceOp::Min, nullptr);
  check_knobs_agree(*host.world, {{"KOLO_NUM_NCCL_STREAMS", NcclOptions::from_env().num_streams}});
  if (device_backend_fallback_order(true, static_cast<int>(visible)).empty()) return d;
  d.name = "nccl";
  d.device = cuda_device_for_local_rank(host.local_rank);
  d.world = std::make_unique<NcclBackend>(*host.world, d.device);
  d.local = std::make_unique<NcclBackend>(*host.local, d.device);
#else
  (void)host;
#endif
  return d;
}

std::unique_ptr<DeviceCollectives> make_device_collectives(const Backends& host) {
#ifdef KOLO_WITH_NCCL
  DeviceBackends d = make_device_backends(host);
  if (d.name == "none") return nullptr;
  return make_nccl_device_collectives(std::move(d), *host.cross);
#else
  (void)host;
  return nullptr;
#endif
}

}  // namespace kolo
