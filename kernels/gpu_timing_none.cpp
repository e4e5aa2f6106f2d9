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
GpuStreamHandle::GpuStreamHandle() {
  throw InputError("a GPU stream needs CUDA, but " + cuda_unavailable_reason());
}
GpuStreamHandle::~GpuStreamHandle() = default;
void GpuStreamHandle::synchronize() const {}
void gpu_synchronize(CUstream_st*) {}
std::size_t gpu_memory_used() { return 0; }
GpuCeilings measure_gpu_ceilings() {
  throw InputError("GPU ceilings need CUDA, but " + cuda_unavailable_reason());
}
GpuBuffer::GpuBuffer(std::size_t) {
  throw InputError("GPU buffers need CUDA, but " + cuda_unavailable_reason());
}
GpuBuffer::~GpuBuffer() = default;
void GpuBuffer::upload(const void*, std::size_t, CUstream_st*) {}
void GpuBuffer::download(void*, std::size_t, CUstream_st*) const {}

}  // namespace nfmimo
