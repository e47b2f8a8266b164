// Where a tensor lives: the CPU or one CUDA device. The CUDA backend plugs in through DeviceBackend.
#pragma once

#include <cstdint>
#include <string>

namespace kolo {

enum class DeviceType : uint8_t { CPU = 0, CUDA = 1 };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::CUDA, index}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
  bool operator==(const Device& o) const { return type == o.type && (is_cpu() || index == o.index); }
  bool operator!=(const Device& o) const { return !(*this == o); }
};

// Parses "cpu", "cuda", "cuda:1"; throws kolo::Error on anything else.
Device parse_device(const std::string& text);

}  // namespace kolo
