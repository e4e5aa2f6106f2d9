// Which device runs the work. Compiles without nvcc and without CUDA headers; counting devices never throws,
// and a binary built with CUDA starts and runs on the CPU on a machine without a GPU or an NVIDIA driver.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

namespace nfmimo {

enum class DeviceKind { Auto, Cpu, Cuda };

DeviceKind parse_device(const std::string& name);  // "auto", "cpu", "cuda"; InputError otherwise
std::string to_string(DeviceKind kind);

bool cuda_built();        // this binary was compiled with the CUDA backend
int cuda_device_count();  // 0 when not built with CUDA, no driver, or no GPU

struct GpuInfo {
  std::string name;
  int compute_major = 0, compute_minor = 0;
  std::size_t memory_bytes = 0;
  int multiprocessors = 0;
  int driver_version = 0, runtime_version = 0;
  std::size_t cudnn_version = 0;
  double memory_bandwidth_gbs = 0;  // from the memory clock and bus width (theoretical)
};
std::optional<GpuInfo> gpu_info(int device = 0);
// Why CUDA is unavailable, for messages ("built without CUDA", "no NVIDIA driver", ...); empty when
// available.
std::string cuda_unavailable_reason();

// Auto -> Cuda when a GPU is present, else Cpu. Cuda without a usable GPU is an InputError with the reason.
DeviceKind resolve_device(DeviceKind requested);

}  // namespace nfmimo
