// Device queries of a build without the CUDA backend (NFMIMO_CUDA=OFF).
#include "kernels/device.hpp"

namespace nfmimo {

bool cuda_built() { return false; }
int cuda_device_count() { return 0; }
std::optional<GpuInfo> gpu_info(int) { return std::nullopt; }
std::string cuda_unavailable_reason() { return "this nfmimo was built without CUDA (NFMIMO_CUDA=OFF)"; }

}  // namespace nfmimo
