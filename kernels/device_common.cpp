#include <fmt/format.h>

#include "kernels/device.hpp"
#include "kernels/device_buffer.hpp"
#include "radar/error.hpp"

namespace nfmimo {

DeviceKind parse_device(const std::string& name) {
  if (name == "auto") return DeviceKind::Auto;
  if (name == "cpu") return DeviceKind::Cpu;
  if (name == "cuda" || name == "gpu") return DeviceKind::Cuda;
  throw InputError(fmt::format("unknown device '{}' (auto, cpu, cuda)", name));
}

std::string to_string(DeviceKind kind) {
  switch (kind) {
    case DeviceKind::Auto:
      return "auto";
    case DeviceKind::Cpu:
      return "cpu";
    case DeviceKind::Cuda:
      return "cuda";
  }
  return "unknown";
}

DeviceKind resolve_device(DeviceKind requested) {
  if (requested == DeviceKind::Cpu) return DeviceKind::Cpu;
  const bool available = cuda_device_count() > 0;
  if (requested == DeviceKind::Auto) return available ? DeviceKind::Cuda : DeviceKind::Cpu;
  if (!available)
    throw InputError(fmt::format("--device cuda was asked for, but {}", cuda_unavailable_reason()));
  return DeviceKind::Cuda;
}

void device_memory::require_within(std::size_t offset, std::size_t count, std::size_t size,
                                   const char* operation) {
  if (offset > size || count > size - offset)
    throw InputError(fmt::format("device {} of elements [{}, {}) outside the buffer's {} elements", operation,
                                 offset, offset + count, size));
}

}  // namespace nfmimo
