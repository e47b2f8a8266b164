// Reads the KOLO_* knobs through core/util/env (strict parsing, errors name the variable).
#include "collectives/config.h"

#include "core/util/env.h"
#include "core/util/error.h"

namespace kolo {

Config Config::from_env() {
  Config c;
  c.fusion_threshold = env::get_int("KOLO_FUSION_THRESHOLD", c.fusion_threshold);
  c.device_bucket_bytes = env::get_int("KOLO_DEVICE_BUCKET_BYTES", c.device_bucket_bytes);
  c.cycle_time_ms = env::get_double("KOLO_CYCLE_TIME", c.cycle_time_ms);
  c.cache_capacity = env::get_int("KOLO_CACHE_CAPACITY", c.cache_capacity);
  c.allreduce_chunk_bytes = env::get_int("KOLO_ALLREDUCE_CHUNK_BYTES", c.allreduce_chunk_bytes);
  c.shm_allreduce = env::get_bool("KOLO_SHM_ALLREDUCE", c.shm_allreduce);
  c.shm_control_plane = env::get_bool("KOLO_SHM_CONTROL_PLANE", c.shm_control_plane);
  c.timeline = env::get("KOLO_TIMELINE").value_or("");
  c.stall_check_time_s = env::get_double("KOLO_STALL_CHECK_TIME", c.stall_check_time_s);
  c.stall_shutdown_time_s = env::get_double("KOLO_STALL_SHUTDOWN_TIME", c.stall_shutdown_time_s);
  c.heartbeat_timeout_s = env::get_double("KOLO_HEARTBEAT_TIMEOUT", c.heartbeat_timeout_s);
  c.hierarchical_allreduce = env::get_bool("KOLO_HIERARCHICAL_ALLREDUCE", c.hierarchical_allreduce);
  c.fake_local_size = static_cast<int>(env::get_int("KOLO_FAKE_LOCAL_SIZE", c.fake_local_size));
  c.autotune = env::get_bool("KOLO_AUTOTUNE", c.autotune);
  c.autotune_log = env::get("KOLO_AUTOTUNE_LOG").value_or("");
  c.autotune_window_cycles = static_cast<int>(env::get_int("KOLO_AUTOTUNE_WINDOW", c.autotune_window_cycles));
  c.backend = env::get("KOLO_BACKEND").value_or(c.backend);
  c.compression = compression_from_name(env::get("KOLO_COMPRESSION").value_or("none"));
  c.validate();
  return c;
}

void Config::validate() const {
  KOLO_CHECK(fusion_threshold >= 0, "KOLO_FUSION_THRESHOLD must be >= 0, got ", fusion_threshold);
  KOLO_CHECK(device_bucket_bytes >= 0, "KOLO_DEVICE_BUCKET_BYTES must be >= 0, got ", device_bucket_bytes);
  KOLO_CHECK(cycle_time_ms > 0, "KOLO_CYCLE_TIME must be > 0 ms, got ", cycle_time_ms);
  KOLO_CHECK(cache_capacity >= 0, "KOLO_CACHE_CAPACITY must be >= 0, got ", cache_capacity);
  KOLO_CHECK(allreduce_chunk_bytes >= 0, "KOLO_ALLREDUCE_CHUNK_BYTES must be >= 0, got ", allreduce_chunk_bytes);
  KOLO_CHECK(stall_check_time_s > 0, "KOLO_STALL_CHECK_TIME must be > 0 s, got ", stall_check_time_s);
  KOLO_CHECK(stall_shutdown_time_s >= 0, "KOLO_STALL_SHUTDOWN_TIME must be >= 0 s, got ", stall_shutdown_time_s);
  KOLO_CHECK(heartbeat_timeout_s > 0, "KOLO_HEARTBEAT_TIMEOUT must be > 0 s, got ", heartbeat_timeout_s);
  KOLO_CHECK(fake_local_size >= 0, "KOLO_FAKE_LOCAL_SIZE must be >= 0, got ", fake_local_size);
  KOLO_CHECK(autotune_window_cycles > 0, "KOLO_AUTOTUNE_WINDOW must be > 0, got ", autotune_window_cycles);
  KOLO_CHECK(backend == "auto" || backend == "mpi" || backend == "loopback", "KOLO_BACKEND '", backend,
             "' is not one of auto, mpi, loopback");
}

}  // namespace kolo
