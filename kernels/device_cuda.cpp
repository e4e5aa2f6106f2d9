// Device queries of a build with the CUDA backend. Only the runtime API is used here; it loads the driver
// library at run time, so a machine without a driver gets an error code (never a crash).
#include <cuda_runtime.h>
#include <cudnn.h>

#include <fmt/format.h>

#include "kernels/device.hpp"

namespace nfmimo {

bool cuda_built() { return true; }

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls are not confused by it
    return 0;
  }
  return count;
}

std::string cuda_unavailable_reason() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return fmt::format("no usable GPU was found ({}: {})", cudaGetErrorName(e), cudaGetErrorString(e));
  }
  if (count == 0) return "no GPU was found";
  return "";
}

std::optional<GpuInfo> gpu_info(int device) {
  if (device >= cuda_device_count()) return std::nullopt;
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, device) != cudaSuccess) return std::nullopt;
  GpuInfo info;
  info.name = p.name;
  info.compute_major = p.major;
  info.compute_minor = p.minor;
  info.memory_bytes = p.totalGlobalMem;
  info.multiprocessors = p.multiProcessorCount;
  cudaDriverGetVersion(&info.driver_version);
  cudaRuntimeGetVersion(&info.runtime_version);
  info.cudnn_version = cudnnGetVersion();
  int clock_khz = 0, bus_bits = 0;
  cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device);
  cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device);
  info.memory_bandwidth_gbs = 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;
  return info;
}

}  // namespace nfmimo
