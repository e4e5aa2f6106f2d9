// The kernels library in a build without the CUDA backend (NFMIMO_CUDA=OFF): the device queries say so, and
// everything that would need the GPU is a clear InputError, never a silent CPU fallback.
#include "kernels/device.hpp"
#include "kernels/device_buffer.hpp"
#include "kernels/gpu_imaging.hpp"
#include "kernels/gpu_iterative.hpp"
#include "kernels/gpu_normalise.hpp"
#include "kernels/gpu_timing.hpp"
#include "radar/error.hpp"

namespace nfmimo {

bool cuda_built() { return false; }
int cuda_device_count() { return 0; }
std::optional<GpuInfo> gpu_info(int) { return std::nullopt; }
std::string cuda_unavailable_reason() { return "this nfmimo was built without CUDA (NFMIMO_CUDA=OFF)"; }

namespace {
[[noreturn]] void unavailable(const char* what) {
  throw InputError(std::string(what) + " needs the CUDA backend, but " + cuda_unavailable_reason());
}
}  // namespace

// Device memory and streams.
void* device_memory::allocate(std::size_t) { unavailable("device memory"); }
void device_memory::release(void*) noexcept {}
void device_memory::copy_to_device(void*, const void*, std::size_t, cudaStream_t) {
  unavailable("device memory");
}
void device_memory::copy_to_host(void*, const void*, std::size_t, cudaStream_t) {
  unavailable("device memory");
}
void device_memory::zero(void*, std::size_t, cudaStream_t) { unavailable("device memory"); }
DeviceStream::DeviceStream() { unavailable("a device stream"); }
DeviceStream::~DeviceStream() = default;
void DeviceStream::synchronize() const { unavailable("a device stream"); }

// Imaging.
struct GpuImagingPlan::Impl {};
GpuImagingPlan::GpuImagingPlan(const RadarSystem&, const ImagingGrid&, int, int) {
  unavailable("the GPU imaging plan");
}
GpuImagingPlan::~GpuImagingPlan() = default;
const RadarSystem& GpuImagingPlan::system() const { throw Error("unreachable"); }
const ImagingGrid& GpuImagingPlan::grid() const { throw Error("unreachable"); }
int GpuImagingPlan::max_batch() const { return 0; }
void GpuImagingPlan::forward(const cfloat*, cfloat*, int, cudaStream_t) const {}
void GpuImagingPlan::image(Method, ImagingMode, const cfloat*, cfloat*, int, cudaStream_t) const {}
void GpuImagingPlan::forward_host(const cfloat*, cfloat*, int) const {}
void GpuImagingPlan::image_host(Method, ImagingMode, const cfloat*, cfloat*, int) const {}

// Iterative solvers.
struct GpuIterativeSolver::Impl {};
GpuIterativeSolver::GpuIterativeSolver(const GpuImagingPlan&, const PowerIterationOptions&) {
  unavailable("the GPU iterative solver");
}
GpuIterativeSolver::~GpuIterativeSolver() = default;
double GpuIterativeSolver::lipschitz() const { return 0; }
std::vector<IterativeReport> GpuIterativeSolver::solve(const cfloat*, cfloat*, int,
                                                       const IterativeOptions&) const {
  return {};
}
std::vector<IterativeReport> GpuIterativeSolver::solve_device(const cfloat*, cfloat*, int,
                                                              const IterativeOptions&, cudaStream_t) const {
  return {};
}
std::string GpuIterativeSolver::device_description() const { return "none"; }

// Normalisation.
void normalise_by_sample_max(const cfloat*, float*, int, std::size_t, NormaliseMode, cudaStream_t) {
  unavailable("the GPU normalisation");
}
void frame_max_scales_device(const cfloat*, int, std::size_t, float*, cudaStream_t) {
  unavailable("the GPU normalisation");
}
void complex_magnitude(const cfloat*, float*, std::size_t, cudaStream_t) {
  unavailable("the GPU magnitude kernel");
}

// Timing.
struct GpuEventTimer::Impl {};
GpuEventTimer::GpuEventTimer() { unavailable("GPU timing"); }
GpuEventTimer::~GpuEventTimer() = default;
void GpuEventTimer::start(cudaStream_t) {}
void GpuEventTimer::stop(cudaStream_t) {}
double GpuEventTimer::elapsed_ms() const { return 0; }
void gpu_synchronize(cudaStream_t) {}
std::size_t gpu_memory_used() { return 0; }
GpuCeilings measure_gpu_ceilings() { unavailable("GPU ceilings"); }

}  // namespace nfmimo
