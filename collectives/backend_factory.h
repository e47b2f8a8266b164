// The one place that chooses a backend. Fallback order (tested in tests/collectives):
//   KOLO_BACKEND=mpi       -> MPI (error if not built)
//   KOLO_BACKEND=loopback  -> loopback (size 1)
//   KOLO_BACKEND=auto      -> MPI when built in and the process was launched by mpirun/srun (or MPI is
//                             already initialised), else loopback.
// Device (CUDA) buffers have their own order (device_backend_fallback_order, tested in tests/collectives_gpu):
//   nccl when kolo was built with NCCL and a CUDA device is visible; otherwise none, and device tensors are
//   refused with an error. NCCL is bootstrapped over the host backends built here (MPI, or loopback at size 1).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "collectives/backend.h"
#include "collectives/config.h"

namespace kolo {

struct Backends {
  std::string name;
  std::unique_ptr<Backend> world;
  std::unique_ptr<Backend> local;  // ranks of this node (or fake node, KOLO_FAKE_LOCAL_SIZE)
  std::unique_ptr<Backend> cross;  // ranks with this local rank on every node
  std::unique_ptr<ControlPlane> control;
  int local_rank = 0, local_size = 1, cross_rank = 0, cross_size = 1;
  // Every node holds the same number of ranks; hierarchical collectives need it (equal on every rank).
  bool uniform_nodes = true;
};

std::vector<std::string> backend_fallback_order(const std::string& requested, bool mpi_built, bool mpi_launched);
// Builds the backends; collective over all ranks (call from the thread that will use them).
Backends make_backends(const Config& config);

// Backends for device buffers, on this rank's CUDA device (local_rank modulo the visible devices).
struct DeviceBackends {
  std::string name = "none";
  int device = -1;
  std::unique_ptr<Backend> world;  // all ranks
  std::unique_ptr<Backend> local;  // the ranks of `host.local` (a node, or a fake node)
};
std::vector<std::string> device_backend_fallback_order(bool nccl_built, int visible_devices);
// Collective over all ranks of `host`; name "none" (and no backends) when no device backend applies.
DeviceBackends make_device_backends(const Backends& host);

class DeviceCollectives;
// The executor's device collectives over make_device_backends(host); nullptr (on every rank alike) when no
// device backend applies. Collective over all ranks of `host`, which must outlive the result.
std::unique_ptr<DeviceCollectives> make_device_collectives(const Backends& host);

}  // namespace kolo
