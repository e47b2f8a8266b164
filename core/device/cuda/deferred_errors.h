// Input errors that kernels find on the device (ids out of range) reported without a host sync on the hot
// path. A check owns a counter in mapped pinned host memory that its kernel increments; the host reads it
// (no sync) when the check is armed again and, after every synchronisation with the device (device or
// stream synchronize, copies to the host such as loss.item()), reads all counters of the device. A non-zero
// counter throws kolo::Error with the op's own message for the launch that failed, marked as found on the
// device, and resets. So a bad id in step k is reported at the latest at the next host read of a result.
#pragma once

#include <string>

namespace kolo::cuda {

class DeferredCheck {
 public:
  // The check named `site` on `device` (one per pair, created on first use, alive for the process).
  static DeferredCheck& get(const char* site, int device);
  // Throws for an earlier launch whose kernel already counted errors, then records `context` (the message
  // for this launch, given the error count) and returns the device pointer its kernel increments.
  int* arm(std::string context);
  // Throws when the counter is non-zero (reading it does not wait for the device).
  void raise_if_set();

 private:
  DeferredCheck(const char* site, int device);
  const char* site_;
  int device_;
  int* host_ = nullptr;    // mapped pinned memory
  int* device_ptr_ = nullptr;
  std::string context_;
};

// Every check of `device`: called right after the host synchronised with it.
void raise_deferred_errors(int device);

}  // namespace kolo::cuda
