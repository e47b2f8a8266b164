// NCCL implementation of DeviceCollectives: the world NcclBackend and one split per process set, each with
// its NcclFusion, plus NcclHierarchicalAllreduce over the node-local NcclBackend and the host `cross`
// backend. Ready events (CudaEvents) are handed to the backend's next collective with await_next().
#pragma once

#include <memory>

#include "collectives/backend_factory.h"
#include "collectives/device_collectives.h"

namespace kolo {

// `cross` (host ranks with this local rank on every node) must outlive the result.
std::unique_ptr<DeviceCollectives> make_nccl_device_collectives(DeviceBackends devices, Backend& cross);

}  // namespace kolo
