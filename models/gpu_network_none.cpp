// The GPU network backend in a build (or a state of the code) without it: a clear error, never a silent CPU
// fallback.
#include "kernels/device.hpp"
#include "models/training_backend.hpp"
#include "radar/error.hpp"

namespace nfmimo::nn {

std::unique_ptr<TrainingBackend> make_gpu_training_backend(const Network&, const Parameters&, Precision) {
  throw InputError("GPU training needs the cuDNN network backend, which this build does not have (" +
                   (cuda_built() ? std::string("not implemented yet") : cuda_unavailable_reason()) + ")");
}

}  // namespace nfmimo::nn
