// GPU timing in a build without CUDA: constructing anything is a clear error.
#include "kernels/device.hpp"
#include "kernels/gpu_timing.hpp"
#include "radar/error.hpp"

namespace nfmimo {

struct GpuEventTimer::Impl {};
GpuEventTimer::GpuEventTimer() {
  throw InputError("GPU timing needs CUDA, but " + cuda_unavailable_reason());
}
GpuEventTimer::~GpuEventTimer() = default;
void GpuEventTimer::start(CUstream_st*) {}
void GpuEventTimer::stop(CUstream_st*) {}
double GpuEventTimer::elapsed_ms() const { return 0; }
void gpu_synchronize(CUstream_st*) {}
std::size_t gpu_memory_used() { return 0; }
GpuCeilings measure_gpu_ceilings() {
  throw InputError("GPU ceilings need CUDA, but " + cuda_unavailable_reason());
}

}  // namespace nfmimo
