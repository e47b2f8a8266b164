// Every knob of the collectives runtime, parsed once from KOLO_* environment variables by
// Config::from_env() and settable from C++ before constructing a Runtime. Names mirror Horovod's.
#pragma once

#include <cstdint>
#include <string>

#include "collectives/types.h"

namespace kolo {

struct Config {
  int64_t fusion_threshold = 128ll << 20;  // KOLO_FUSION_THRESHOLD bytes: most bytes fused into one collective
  // KOLO_DEVICE_BUCKET_BYTES: a fused group of device tensors is launched in buckets of about this many bytes,
  // in submission order, each waiting on the device only for its own tensors: the first gradients of a
  // backward pass are reduced while later ones are still being computed (the host submits far ahead of the
  // device, so one group can span most of a backward pass). 0: one launch per group.
  int64_t device_bucket_bytes = 32ll << 20;
  double cycle_time_ms = 1.0;              // KOLO_CYCLE_TIME ms: longest pause between negotiation cycles
  int64_t cache_capacity = 1024;           // KOLO_CACHE_CAPACITY: response cache slots (0 disables the fast path)
  // KOLO_ALLREDUCE_CHUNK_BYTES: bytes per backend allreduce call. Open MPI 4.1's large-message path collapses
  // ~10x at >= 64 MiB on the reference machine, and small chunks keep the packed data in cache.
  int64_t allreduce_chunk_bytes = 2ll << 20;
  // KOLO_SHM_ALLREDUCE: host allreduces of at least 8 KiB (and fused groups, unpacked) go through a
  // shared-memory segment instead of MPI when all ranks share one node (collectives/mpi/shm_allreduce.h).
  bool shm_allreduce = true;
  bool shm_control_plane = true;           // KOLO_SHM_CONTROL_PLANE: negotiate through shared memory on one node
  std::string timeline;                    // KOLO_TIMELINE: Chrome-trace JSON path (written by rank 0)
  double stall_check_time_s = 60.0;        // KOLO_STALL_CHECK_TIME: warn about tensors missing on some ranks
  double stall_shutdown_time_s = 0.0;      // KOLO_STALL_SHUTDOWN_TIME: > 0 aborts all ranks after that long
  double heartbeat_timeout_s = 10.0;       // KOLO_HEARTBEAT_TIMEOUT: silence after which a peer is declared lost
  bool hierarchical_allreduce = false;     // KOLO_HIERARCHICAL_ALLREDUCE
  int fake_local_size = 0;                 // KOLO_FAKE_LOCAL_SIZE: > 0 groups ranks into nodes of this size
                                           // (the last node holds fewer when it does not divide the ranks)
  bool autotune = false;                   // KOLO_AUTOTUNE
  std::string autotune_log;                // KOLO_AUTOTUNE_LOG: CSV of the samples (rank 0)
  int autotune_window_cycles = 20;         // KOLO_AUTOTUNE_WINDOW: busy cycles scored per candidate
  std::string backend = "auto";            // KOLO_BACKEND: auto, mpi or loopback
  Compression compression = Compression::None;  // KOLO_COMPRESSION: default wire compression (none, fp16, bf16)

  static Config from_env();
  void validate() const;  // throws kolo::Error naming the bad knob
};

}  // namespace kolo
