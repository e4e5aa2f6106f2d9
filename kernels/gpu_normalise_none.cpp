// The GPU normalisation in a build without CUDA: a clear error, never a silent CPU fallback.
#include "kernels/device.hpp"
#include "kernels/gpu_normalise.hpp"
#include "radar/error.hpp"

namespace nfmimo {

void normalise_by_sample_max(const cfloat*, float*, int, std::size_t, NormaliseMode, CUstream_st*) {
  throw InputError("the GPU normalisation needs CUDA: " + cuda_unavailable_reason());
}

void frame_max_scales_device(const cfloat*, int, std::size_t, float*, CUstream_st*) {
  throw InputError("the GPU normalisation needs CUDA: " + cuda_unavailable_reason());
}

void complex_magnitude(const cfloat*, float*, std::size_t, CUstream_st*) {
  throw InputError("the GPU magnitude kernel needs CUDA: " + cuda_unavailable_reason());
}

}  // namespace nfmimo
