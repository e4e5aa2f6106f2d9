// GpuSynthesizer in a build without CUDA: constructing one is a clear error, never a silent CPU fallback.
#include "kernels/device.hpp"
#include "radar/error.hpp"
#include "synthesizer/gpu_synthesizer.hpp"

namespace nfmimo {

struct GpuSynthesizer::Impl {};

GpuSynthesizer::GpuSynthesizer(const RadarSystem&, const ImagingGrid&, const SceneConfig&, std::uint64_t,
                               int) {
  throw InputError("the GPU was asked for, but " + cuda_unavailable_reason());
}
GpuSynthesizer::~GpuSynthesizer() = default;
void GpuSynthesizer::generate(const DrawnBatch&, cfloat*, cfloat*, float*, cudaStream_t) const {}
void GpuSynthesizer::generate_host(const DrawnBatch&, cfloat*, cfloat*, float*) const {}

}  // namespace nfmimo
