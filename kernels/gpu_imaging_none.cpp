// GpuImagingPlan in a build without CUDA: constructing one is a clear error, never a silent CPU fallback.
#include "kernels/device.hpp"
#include "kernels/gpu_imaging.hpp"
#include "radar/error.hpp"

namespace nfmimo {

struct GpuImagingPlan::Impl {};

GpuImagingPlan::GpuImagingPlan(const RadarSystem&, const ImagingGrid&, int, int) {
  throw InputError("the GPU was asked for, but " + cuda_unavailable_reason());
}
GpuImagingPlan::~GpuImagingPlan() = default;
const RadarSystem& GpuImagingPlan::system() const { throw Error("unreachable"); }
const ImagingGrid& GpuImagingPlan::grid() const { throw Error("unreachable"); }
int GpuImagingPlan::max_batch() const { return 0; }
void GpuImagingPlan::forward(const cfloat*, cfloat*, int, GpuStream) const {}
void GpuImagingPlan::image(Method, ImagingMode, const cfloat*, cfloat*, int, GpuStream) const {}
void GpuImagingPlan::forward_host(const cfloat*, cfloat*, int) const {}
void GpuImagingPlan::image_host(Method, ImagingMode, const cfloat*, cfloat*, int) const {}

}  // namespace nfmimo
