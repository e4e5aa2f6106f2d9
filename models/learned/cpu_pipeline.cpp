#include "models/learned/cpu_pipeline.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "kernels/imager.hpp"
#include "models/learned/complex_dense.hpp"
#include "models/learned/composite.hpp"
#include "models/learned/pipeline.hpp"
#include "models/nn/cpu/network.hpp"

namespace nfmimo::nn {

CpuLearnedPipeline::CpuLearnedPipeline(const Model& model, bool complex_input, bool dense_first_stage,
                                       ImagingMode physics_mode, int max_batch)
    : model_(model),
      complex_input_(complex_input),
      dense_first_stage_(dense_first_stage),
      physics_mode_(physics_mode),
      max_batch_(max_batch),
      imager_(std::make_unique<Imager>(model.system, model.grid, DeviceKind::Cpu, max_batch)),
      // A composite's U-Net gets its own parameters only; the dense layer is used in place in model_.
      network_(std::make_unique<CpuNetwork>(
          model.network(), dense_first_stage ? without_dense_parameters(model.parameters) : model.parameters,
          Mode::Inference)) {
  const std::size_t V = model_.grid.voxels();
  adjoint_.resize(std::size_t(max_batch) * V);
  input_.resize(std::size_t(max_batch) * V * (complex_input ? 2 : 1));
  scales_.resize(std::size_t(max_batch));
}

CpuLearnedPipeline::~CpuLearnedPipeline() = default;

std::string CpuLearnedPipeline::description() const {
  return fmt::format("physics: {}; network: {}", imager_->device_description(), network_->description());
}

void CpuLearnedPipeline::chunk_input(const cfloat* measurements, int count, float* input) {
  const std::size_t V = model_.grid.voxels();
  imager_->image(Method::Adjoint, physics_mode_, measurements, adjoint_.data(), count);
  if (!dense_first_stage_) {
    normalise_network_input(adjoint_.data(), count, V, complex_input_, input);
    return;
  }
  // The composites use the adjoint for the per-frame scale only (models/learned/composite.hpp).
  measurement_scales(adjoint_.data(), count, V, scales_.data());
  complex_dense_forward(dense_weights(model_.parameters), dense_bias(model_.parameters),
                        int(model_.system.samples_per_frame()), int(V), measurements, count, input,
                        scales_.data());
}

void CpuLearnedPipeline::network_input(const cfloat* measurements, int frames, float* input) {
  const std::size_t V = model_.grid.voxels(), KTR = model_.system.samples_per_frame();
  const int channels = complex_input_ ? 2 : 1;
  for (int first = 0; first < frames; first += max_batch_) {
    const int count = std::min(max_batch_, frames - first);
    chunk_input(measurements + std::size_t(first) * KTR, count, input + std::size_t(first) * channels * V);
  }
}

void CpuLearnedPipeline::run(const cfloat* measurements, int frames, float* volumes) {
  const std::size_t V = model_.grid.voxels(), KTR = model_.system.samples_per_frame();
  for (int first = 0; first < frames; first += max_batch_) {
    const int count = std::min(max_batch_, frames - first);
    chunk_input(measurements + std::size_t(first) * KTR, count, input_.data());
    network_->forward(input_.data(), volumes + std::size_t(first) * V, count);
  }
}

}  // namespace nfmimo::nn
